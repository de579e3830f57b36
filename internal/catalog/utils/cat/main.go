// Command cat is the /whisk.system/utils/cat action: it joins params.lines
// with newlines into payload (see package utils).
package main

import (
	"github.com/clemmys/clemmys/internal/catalog/utils"
	"github.com/clemmys/clemmys/sdk"
)

func main() { sdk.Run(utils.Cat) }
