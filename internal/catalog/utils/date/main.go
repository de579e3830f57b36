// Command date is the /whisk.system/utils/date action: it returns the
// current date and time (see package utils).
package main

import (
	"github.com/clemmys/clemmys/internal/catalog/utils"
	"github.com/clemmys/clemmys/sdk"
)

func main() { sdk.Run(utils.Date) }
