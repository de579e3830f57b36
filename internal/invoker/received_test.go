package invoker

import (
	"slices"
	"testing"
)

// TestReceivedIDs: the heartbeat holds the run requests received and not
// answered, and reports none once the run subscription is saturated
// (requests may then wait unseen).
func TestReceivedIDs(t *testing.T) {
	iv := &Invoker{cfg: Config{Capacity: 1}, received: map[string]int{}}
	if ids, ok := iv.receivedIDs(); !ok || len(ids) != 0 {
		t.Fatalf("idle: %v %v", ids, ok)
	}
	doneA := iv.holding("a")
	doneB := iv.holding("b")
	doneB2 := iv.holding("b")
	ids, ok := iv.receivedIDs()
	slices.Sort(ids)
	if !ok || !slices.Equal(ids, []string{"a", "b"}) {
		t.Fatalf("held: %v %v", ids, ok)
	}
	doneB()
	if ids, _ := iv.receivedIDs(); !slices.Contains(ids, "b") {
		t.Fatalf("b answered once of twice: %v", ids)
	}
	doneB2()
	doneC := iv.holding("c")
	doneD := iv.holding("d")
	doneE := iv.holding("e") // a, c, d, e: the limit of capacity 1
	if ids, ok := iv.receivedIDs(); ok || ids != nil {
		t.Fatalf("saturated: %v %v", ids, ok)
	}
	doneA()
	doneC()
	doneD()
	doneE()
	if ids, ok := iv.receivedIDs(); !ok || len(ids) != 0 {
		t.Fatalf("all answered: %v %v", ids, ok)
	}
}
