// Command clemmys runs the clemmys platform and its tools; see internal/cli.
package main

import (
	"os"

	"github.com/clemmys/clemmys/internal/cli"
)

func main() { os.Exit(cli.Run(os.Args[1:], os.Stdout, os.Stderr)) }
