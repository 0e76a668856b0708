// Command gen regenerates tufota's TUF test repositories: run it from the
// module root as `go run ./repo-fixtures/gen` (or `make fixtures`). It
// rewrites every fixture directory under repo-fixtures/ and its README.
package main

import (
	"flag"
	"fmt"
	"os"

	repofixtures "github.com/tufota/tufota/repo-fixtures"
)

func main() {
	dir := flag.String("dir", "repo-fixtures", "directory to write the fixtures into")
	flag.Parse()
	fixtures, err := repofixtures.All()
	if err == nil {
		err = repofixtures.Write(*dir, fixtures)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
	fmt.Printf("wrote %d fixtures to %s\n", len(fixtures), *dir)
}
