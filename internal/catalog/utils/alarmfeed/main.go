// Command alarmfeed is the code of the /whisk.system/alarms feed actions
// (alarm, once, interval). The clemmys gateway serves those feeds itself
// (internal/gateway/feeds.go): this code runs only if one is invoked
// another way (through a package binding), and says so.
package main

import (
	"errors"

	"github.com/clemmys/clemmys/sdk"
)

func main() {
	sdk.Run(func(map[string]any) (map[string]any, error) {
		return nil, errors.New("the alarms feeds are served by the clemmys gateway: invoke /whisk.system/alarms/alarm, /once or /interval by that name, not through a package binding")
	})
}
