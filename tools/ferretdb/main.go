// Command ferretdb-embedded runs FerretDB (MongoDB wire protocol on SQLite)
// on a loopback port, for the FHIR server's embedded and test database.
//
// It uses FerretDB's embeddable package rather than cmd/ferretdb, whose
// binaries panic when built outside FerretDB's own tree (no version file).
//
// Usage: ferretdb-embedded -listen 127.0.0.1:27017 -dir ./var/ferretdb
//
// It prints one line "ready mongodb://..." on stdout once it accepts
// connections, and stops cleanly on SIGTERM or SIGINT, closing SQLite.
// With -exit-on-stdin-eof it also stops cleanly when its standard input
// reaches end of file, i.e. when the parent that holds the pipe has died.
// FerretDB's own logs go to stderr, at error level unless -log-level says
// otherwise: at warn level FerretDB dumps every failed command's response (a
// duplicate key error quotes the key's value), which would put data in logs.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:27017", "TCP address to listen on")
	dir := flag.String("dir", "./var/ferretdb", "directory for SQLite database files")
	logLevel := flag.String("log-level", "error", "FerretDB log level: debug, info, warn or error")
	stdinEOF := flag.Bool("exit-on-stdin-eof", false, "stop cleanly when standard input is closed")
	flag.Parse()

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fatalf("-log-level: %v", err)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	slog.SetDefault(logger) // also routes the standard log package through it

	abs, err := filepath.Abs(*dir)
	if err != nil {
		fatalf("data directory: %v", err)
	}
	if err = os.MkdirAll(abs, 0o700); err != nil {
		fatalf("data directory: %v", err)
	}

	// New opens the SQLite backend and binds the listener.
	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: *listen},
		Logger:    logger,
		Handler:   "sqlite",
		SQLiteURL: "file:" + abs + "/",
	})
	if err != nil {
		fatalf("%v", err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	if *stdinEOF {
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin)
			stop()
		}()
	}

	done := make(chan error, 1)
	go func() {
		done <- f.Run(ctx)
	}()

	go indexIDs(ctx, abs, 2*time.Second, logger)

	// New has already bound the listening socket and opened SQLite, so the port
	// accepts connections now (Run serves them). No probe connection: FerretDB
	// logs a warning for every client that disconnects without a request.
	fmt.Printf("ready %s\n", f.MongoDBURI())

	// Run returns after the listener, all connections and SQLite are closed.
	if runErr := <-done; runErr != nil {
		fatalf("%v", runErr)
	}
}

// fatalf reports an error on stderr and exits with status 1. It does not use
// the log package, whose output slog.SetDefault filters by level.
func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "ferretdb-embedded: "+format+"\n", args...)
	os.Exit(1)
}
