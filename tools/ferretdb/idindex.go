package main

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	_ "modernc.org/sqlite" // the SQLite driver FerretDB itself uses
)

// FerretDB 1.24's SQLite backend looks documents up by _id (find, update,
// delete with an {_id} filter) with the SQL expression
// `_ferretdb_sjson->'$._id'`, but the unique _id index it creates is on
// `_ferretdb_sjson->"_id"`, which SQLite does not match: every lookup by id
// scans the table. indexIDs adds an index on exactly the expression the
// queries use, for every collection table, so lookups by id use an index.
// It polls, because FerretDB creates tables when collections first appear.

const idIndexSuffix = "_xid_lookup"

func indexIDs(ctx context.Context, dir string, every time.Duration, logger *slog.Logger) {
	ticker := time.NewTicker(every)
	defer ticker.Stop()

	for {
		files, _ := filepath.Glob(filepath.Join(dir, "*.sqlite"))
		for _, file := range files {
			if err := indexFile(ctx, file); err != nil && ctx.Err() == nil {
				logger.Debug("id index", "file", filepath.Base(file), "error", err)
			}
		}

		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

func indexFile(ctx context.Context, file string) error {
	if _, err := os.Stat(file); err != nil {
		return err
	}

	db, err := sql.Open("sqlite", "file:"+file+"?_pragma=busy_timeout(10000)")
	if err != nil {
		return err
	}
	defer db.Close()

	rows, err := db.QueryContext(ctx, `SELECT table_name FROM _ferretdb_collections`)
	if err != nil {
		return err
	}

	var tables []string
	for rows.Next() {
		var name string
		if err = rows.Scan(&name); err != nil {
			rows.Close()
			return err
		}
		tables = append(tables, name)
	}
	rows.Close()

	for _, table := range tables {
		index := strings.ReplaceAll(table, `"`, "") + idIndexSuffix
		q := fmt.Sprintf(`CREATE INDEX IF NOT EXISTS %q ON %q (_ferretdb_sjson->'$._id')`, index, table)
		if _, err = db.ExecContext(ctx, q); err != nil {
			return err
		}
	}

	return nil
}
