package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"time"
)

const activationUsage = `Usage:
  clemmys activation list [NAME] [--limit N] [--skip N] [--since T] [--upto T] [--full]
                           T: unix milliseconds, RFC 3339, or a duration ago (1h)
  clemmys activation get ID|--last [--summary]
  clemmys activation logs ID|--last [--strip]
  clemmys activation result ID|--last
  clemmys activation poll [NAME] [--exit SECONDS]   print new activations' logs as they complete
  clemmys activation verify ID [--expect FILE]      check the record against the runtimes' signed receipts

Every verb takes --json (print the API's JSON), --apihost, --auth,
--insecure; -h lists them.
`

func cmdActivation(args []string, stdout, stderr io.Writer) int {
	return runNoun("activation", activationUsage, map[string]wskVerb{
		"list":   activationList,
		"get":    activationGet,
		"logs":   activationLogs,
		"result": func(c *wskCmd, a []string) int { return c.withActivation(a, "/result", c.printResult) },
		"poll":   activationPoll,
		"verify": activationVerify,
	}, args, stdout, stderr)
}

// activationSummary is what the tables show of an activation.
type activationSummary struct {
	ActivationID string `json:"activationId"`
	Namespace    string `json:"namespace"`
	Name         string `json:"name"`
	Version      string `json:"version"`
	Start        int64  `json:"start"`
	End          int64  `json:"end"`
	Duration     int64  `json:"duration"`
	StatusCode   int    `json:"statusCode"`
	Annotations  []struct {
		Key   string `json:"key"`
		Value any    `json:"value"`
	} `json:"annotations"`
}

// statusNames are OpenWhisk's activation statuses by status code.
var statusNames = []string{"success", "application error", "developer error", "internal error"}

func (a *activationSummary) row() []string {
	kind, start := "", "warm"
	for _, kv := range a.Annotations {
		switch kv.Key {
		case "kind":
			kind = str(kv.Value)
		case "initTime":
			start = "cold"
		}
	}
	status := fmt.Sprint(a.StatusCode)
	if a.StatusCode >= 0 && a.StatusCode < len(statusNames) {
		status = statusNames[a.StatusCode]
	}
	return []string{time.UnixMilli(a.Start).Format(time.DateTime), a.ActivationID, kind, start,
		fmt.Sprintf("%dms", a.Duration), status, a.Namespace + "/" + a.Name + ":" + a.Version}
}

// listActivations fetches a page of activation summaries, newest first.
func (c *wskCmd) listActivations(q url.Values) (json.RawMessage, []activationSummary, error) {
	var raw json.RawMessage
	if err := c.c.do(c.ctx, "GET", kindActivation.collectionPath("_")+"?"+q.Encode(), nil, &raw); err != nil {
		return nil, nil, err
	}
	var list []activationSummary
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, nil, fmt.Errorf("unexpected answer: %w", err)
	}
	return raw, list, nil
}

// nameFilter sets the name query parameter from the optional NAME argument.
func (c *wskCmd) nameFilter(q url.Values) url.Values {
	if len(c.args) > 0 {
		_, name := splitName(c.args[0])
		q.Set("name", name)
	}
	return q
}

func activationList(c *wskCmd, args []string) int {
	query := c.paging(30)
	since := c.fs.String("since", "", "only activations that started at or after `T` (unix ms, RFC 3339, or a duration ago: 1h)")
	upto := c.fs.String("upto", "", "only activations that started at or before `T`")
	full := c.boolFlag("print the full activation records (JSON)", "full", "f")
	if !c.parse(args, "[NAME]", 0, 1) {
		return c.exit
	}
	q := c.nameFilter(query())
	for _, b := range []struct{ name, v string }{{"since", *since}, {"upto", *upto}} {
		if b.v == "" {
			continue
		}
		ms, err := parseWhen(b.v, time.Now())
		if err != nil {
			return c.usageError("--%s: %v", b.name, err)
		}
		q.Set(b.name, fmt.Sprint(ms))
	}
	if *full {
		q.Set("docs", "true")
	}
	raw, list, err := c.listActivations(q)
	if err != nil {
		return c.fail("list activations", err)
	}
	if *c.jsonOut || *full {
		c.printJSON(raw)
		return 0
	}
	rows := [][]string{{"Datetime", "Activation ID", "Kind", "Start", "Duration", "Status", "Entity"}}
	for i := range list {
		rows = append(rows, list[i].row())
	}
	c.table("", rows)
	return 0
}

// withActivation fetches GET .../activations/ID{suffix} for the ID argument
// (or the newest activation with --last) and hands the answer to show.
func (c *wskCmd) withActivation(args []string, suffix string, show func(id string, raw json.RawMessage) int) int {
	last := c.boolFlag("the newest activation", "last", "l")
	if !c.parse(args, "ID|--last", 0, 1) {
		return c.exit
	}
	var id string
	switch {
	case len(c.args) == 1:
		id = c.args[0]
	case *last:
		_, list, err := c.listActivations(url.Values{"limit": {"1"}})
		if err != nil {
			return c.fail("find the newest activation", err)
		}
		if len(list) == 0 {
			fmt.Fprintln(c.stderr, "error: there are no activations yet")
			return 1
		}
		id = list[0].ActivationID
	default:
		return c.usageError("give an activation ID or --last")
	}
	var raw json.RawMessage
	if err := c.c.do(c.ctx, "GET", kindActivation.path(id)+suffix, nil, &raw); err != nil {
		return c.fail(fmt.Sprintf("get activation '%s'", id), err)
	}
	if *c.jsonOut {
		c.printJSON(raw)
		return 0
	}
	return show(id, raw)
}

func (c *wskCmd) printActivation(id string, raw json.RawMessage) int {
	c.ok("got activation %s", id)
	c.printJSON(raw)
	return 0
}

func (c *wskCmd) printResult(_ string, raw json.RawMessage) int {
	var r struct {
		Result json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal(raw, &r); err != nil || r.Result == nil {
		c.printJSON(raw)
		return 0
	}
	c.printJSON(r.Result)
	return 0
}

func activationLogs(c *wskCmd, args []string) int {
	strip := c.boolFlag("print only the messages, without time and stream", "strip", "r")
	return c.withActivation(args, "/logs", func(_ string, raw json.RawMessage) int {
		var l struct {
			Logs []string `json:"logs"`
		}
		if err := json.Unmarshal(raw, &l); err != nil {
			return c.fail("read the logs", err)
		}
		for _, line := range l.Logs {
			if *strip {
				line = stripLogLine(line)
			}
			fmt.Fprintln(c.stdout, line)
		}
		return 0
	})
}

// stripLogLine turns "TIME STREAM: message" into "message".
func stripLogLine(line string) string {
	if _, rest, ok := strings.Cut(line, " "); ok {
		if _, msg, ok := strings.Cut(rest, ": "); ok {
			return msg
		}
	}
	return line
}

func activationPoll(c *wskCmd, args []string) int {
	exit := c.intFlag(0, "stop after `SECONDS` (0: at Ctrl-C)", "exit", "e")
	interval := c.fs.Duration("interval", time.Second, "how often to look for new activations")
	if !c.parse(args, "[NAME]", 0, 1) {
		return c.exit
	}
	ctx, stop := signal.NotifyContext(c.ctx, os.Interrupt)
	defer stop()
	if *exit > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(*exit)*time.Second)
		defer cancel()
	}
	c.ctx = ctx
	q := c.nameFilter(url.Values{"limit": {"50"}})
	// Activations done before the poll started are not shown.
	seen := map[string]bool{}
	_, list, err := c.listActivations(q)
	if err != nil {
		return c.fail("list activations", err)
	}
	for _, a := range list {
		if a.End != 0 {
			seen[a.ActivationID] = true
		}
	}
	if !*c.jsonOut {
		fmt.Fprintln(c.stdout, "Enter Ctrl-c to exit.\nPolling for activation logs")
	}
	tick := time.NewTicker(*interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return 0
		case <-tick.C:
		}
		_, list, err := c.listActivations(q)
		if err != nil {
			if ctx.Err() != nil {
				return 0
			}
			return c.fail("list activations", err)
		}
		slices.Reverse(list) // oldest first
		for _, a := range list {
			if a.End == 0 || seen[a.ActivationID] {
				continue
			}
			seen[a.ActivationID] = true
			if code := c.pollShow(&a); code != 0 {
				if ctx.Err() != nil {
					return 0
				}
				return code
			}
		}
	}
}

// pollShow prints a completed activation's logs.
func (c *wskCmd) pollShow(a *activationSummary) int {
	var l struct {
		Logs []string `json:"logs"`
	}
	if err := c.c.do(c.ctx, "GET", kindActivation.path(a.ActivationID)+"/logs", nil, &l); err != nil {
		return c.fail(fmt.Sprintf("get the logs of activation '%s'", a.ActivationID), err)
	}
	if *c.jsonOut { // one JSON object per line
		b, _ := json.Marshal(map[string]any{"activationId": a.ActivationID, "name": a.Name, "logs": l.Logs})
		fmt.Fprintln(c.stdout, string(b))
		return 0
	}
	fmt.Fprintf(c.stdout, "\nActivation: '%s' (%s)\n", a.Name, a.ActivationID)
	for _, line := range l.Logs {
		fmt.Fprintln(c.stdout, "    "+line)
	}
	return 0
}

// parseWhen reads a point in time: unix milliseconds, RFC 3339, or a
// duration before now ("1h", "90m").
func parseWhen(s string, now time.Time) (int64, error) {
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil && ms >= 0 {
		return ms, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t.UnixMilli(), nil
	}
	if d, err := parseDays(s); err == nil {
		return now.Add(-d).UnixMilli(), nil
	}
	return 0, fmt.Errorf("%q is not unix milliseconds, an RFC 3339 time or a duration ago (1h, 2d)", s)
}

func activationGet(c *wskCmd, args []string) int {
	summary := c.boolFlag("print a summary: the entity, status, time and result", "summary", "s")
	return c.withActivation(args, "", func(id string, raw json.RawMessage) int {
		if !*summary {
			return c.printActivation(id, raw)
		}
		var a struct {
			activationSummary
			Response struct {
				Status string          `json:"status"`
				Result json.RawMessage `json:"result"`
			} `json:"response"`
		}
		if err := json.Unmarshal(raw, &a); err != nil {
			return c.fail(fmt.Sprintf("get activation '%s'", id), err)
		}
		row := a.row()
		fmt.Fprintf(c.stdout, "activation result for '/%s/%s' (%s at %s, %s, %s start)\n",
			a.Namespace, a.Name, a.Response.Status, time.UnixMilli(a.Start).Format(time.DateTime+".000"), row[4], row[3])
		c.printJSON(a.Response.Result)
		return 0
	})
}
