// Command smash is the /whisk.system/utils/smash action: it nests all
// parameters under the property named by params.$fieldName (see package
// utils).
package main

import (
	"github.com/clemmys/clemmys/internal/catalog/utils"
	"github.com/clemmys/clemmys/sdk"
)

func main() { sdk.Run(utils.Smash) }
