package gateway

import (
	"encoding/json"
	"testing"
	"time"
)

func TestNextFire(t *testing.T) {
	base := time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
	ms := func(t time.Time) int64 { return t.UnixMilli() }
	for _, tc := range []struct {
		name string
		f    alarmFeed
		at   time.Time
		want time.Time // zero: never
	}{
		{"cron minute", alarmFeed{Kind: "alarm", Cron: "*/5 * * * *"}, base.Add(time.Minute), base.Add(5 * time.Minute)},
		{"cron seconds", alarmFeed{Kind: "alarm", Cron: "*/10 * * * * *"}, base.Add(time.Second), base.Add(10 * time.Second)},
		{"cron before start", alarmFeed{Kind: "alarm", Cron: "0 * * * *", StartDate: ms(base.Add(3 * time.Hour))}, base, base.Add(3 * time.Hour)},
		{"cron after stop", alarmFeed{Kind: "alarm", Cron: "0 * * * *", StopDate: ms(base.Add(30 * time.Minute))}, base, time.Time{}},
		{"cron max triggers", alarmFeed{Kind: "alarm", Cron: "* * * * *", MaxTriggers: 2, Fired: 2}, base, time.Time{}},
		{"paused", alarmFeed{Kind: "alarm", Cron: "* * * * *", Paused: true}, base, time.Time{}},
		{"interval", alarmFeed{Kind: "interval", Minutes: 10, Created: ms(base)}, base.Add(15 * time.Minute), base.Add(20 * time.Minute)},
		{"interval on the tick", alarmFeed{Kind: "interval", Minutes: 10, Created: ms(base)}, base.Add(20 * time.Minute), base.Add(30 * time.Minute)},
		{"interval start", alarmFeed{Kind: "interval", Minutes: 10, Created: ms(base), StartDate: ms(base.Add(time.Hour))}, base, base.Add(time.Hour)},
		{"once", alarmFeed{Kind: "once", Date: ms(base.Add(time.Hour))}, base, base.Add(time.Hour)},
		{"once missed", alarmFeed{Kind: "once", Date: ms(base)}, base.Add(time.Hour), base.Add(time.Hour)},
		{"once fired", alarmFeed{Kind: "once", Date: ms(base.Add(time.Hour)), Fired: 1}, base, time.Time{}},
		{"bad cron", alarmFeed{Kind: "alarm", Cron: "x"}, base, time.Time{}},
	} {
		got := nextFire(&tc.f, tc.at)
		if !got.Equal(tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestParseFeedTime(t *testing.T) {
	for in, want := range map[string]int64{
		`1767261600000`:               1767261600000,
		`"1767261600000"`:             1767261600000,
		`"2026-01-01T10:00:00Z"`:      1767261600000,
		`"2026-01-01T10:00:00.000Z"`:  1767261600000,
		`"2026-01-01T11:00:00+01:00"`: 1767261600000,
		`null`:                        0,
	} {
		var v any
		_ = json.Unmarshal([]byte(in), &v)
		if got, ok := parseFeedTime(v); !ok || got != want {
			t.Errorf("%s: %d %v, want %d", in, got, ok, want)
		}
	}
	for _, in := range []string{`"tomorrow"`, `-5`, `{}`, `true`} {
		var v any
		_ = json.Unmarshal([]byte(in), &v)
		if _, ok := parseFeedTime(v); ok {
			t.Errorf("%s accepted", in)
		}
	}
}

// FuzzFeedParams: any feed parameters are checked without a panic, and
// an alarm they make has a schedule that can be computed.
func FuzzFeedParams(f *testing.F) {
	f.Add("alarm", `{"cron":"*/5 * * * *","trigger_payload":{"a":1},"startDate":"2026-01-01T00:00:00Z","maxTriggers":3}`)
	f.Add("interval", `{"minutes":5,"stopDate":1767261600000}`)
	f.Add("once", `{"date":"2099-01-01","deleteAfterFire":"rules"}`)
	f.Add("alarm", `{"cron":"@every 1s"}`)
	f.Add("alarm", `{"cron":"0 0 31 2 *"}`)
	g := &Gateway{seqMAC: newKeyedMAC(make([]byte, 32)), cfg: Config{Now: time.Now}}
	f.Fuzz(func(t *testing.T, kind, params string) {
		if !feedActions[kind] {
			return
		}
		var p feedParams
		if json.Unmarshal([]byte(params), &p) != nil {
			return
		}
		a := &alarmFeed{Namespace: "ns", Trigger: "t", Kind: kind, Created: time.Now().UnixMilli()}
		p.TriggerPayload = nil // sealing needs the gateway's keys
		if err := g.applyFeedParams(a, &p, true); err != nil {
			if _, ok := err.(*feedError); !ok {
				t.Fatalf("an error not for the caller: %v", err)
			}
			return
		}
		n := nextFire(a, time.Now())
		if !n.IsZero() && n.Before(time.Now().Add(-time.Second)) {
			t.Fatalf("next fire %v in the past", n)
		}
	})
}
