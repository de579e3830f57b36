package sandbox

import (
	"bytes"
	"errors"
	"fmt"
	"unicode/utf8"
)

// errWriteOverflow is what a guest's write past the stdout cap returns
// (the guest sees EIO) just before it is stopped.
var errWriteOverflow = errors.New("stdout limit reached")

// maxNoteBytes bounds each marker note Run appends to the logs.
const maxNoteBytes = 4 << 10

// capWriter buffers at most limit bytes. It is used by one guest, whose
// writes are sequential, and read after the guest stopped.
//
// For stdout (onOverflow set) a write past the limit fails, calls onOverflow
// and sets overflow. For stderr (onOverflow nil) the excess is dropped
// silently and the write reports success, so logging never breaks a guest.
type capWriter struct {
	limit      int
	onOverflow func()
	buf        bytes.Buffer
	overflow   bool
	notes      []string
}

func (w *capWriter) Write(p []byte) (int, error) {
	room := w.limit - w.buf.Len()
	if len(p) <= room && !w.overflow {
		return w.buf.Write(p)
	}
	if !w.overflow {
		w.overflow = true
		if w.onOverflow != nil {
			w.onOverflow()
		}
	}
	if w.onOverflow != nil {
		return 0, errWriteOverflow
	}
	w.buf.Write(p[:max(room, 0)])
	return len(p), nil
}

// note records a line Run adds to the logs after the guest's own, outside
// the cap.
func (w *capWriter) note(s string) {
	if len(s) > maxNoteBytes {
		cut := maxNoteBytes
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	w.notes = append(w.notes, s)
}

// logs returns the captured stderr, with a truncation marker line if it was
// capped, then the notes, each line prefixed "[clemmys: ".
func (w *capWriter) logs() []byte {
	var out bytes.Buffer
	out.Grow(w.buf.Len() + 64)
	out.Write(w.buf.Bytes())
	marker := func(s string) {
		if out.Len() > 0 && !bytes.HasSuffix(out.Bytes(), []byte("\n")) {
			out.WriteByte('\n')
		}
		fmt.Fprintf(&out, "[clemmys: %s]\n", s)
	}
	if w.overflow {
		marker(fmt.Sprintf("logs truncated at %d bytes", w.limit))
	}
	for _, n := range w.notes {
		marker(n)
	}
	if out.Len() == 0 {
		return nil
	}
	return out.Bytes()
}
