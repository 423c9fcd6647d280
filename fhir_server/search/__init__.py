"""Search: parsing query parameters into MongoDB filters over values stored at write time."""
