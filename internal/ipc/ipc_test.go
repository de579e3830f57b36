package ipc

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
)

func TestFrameRoundTrip(t *testing.T) {
	body, err := Marshal(RunRequest{FunctionID: []byte{1, 2}, Envelope: []byte("sealed")})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	in := []*Frame{
		{ID: 1, Op: OpRun, Body: body},
		{ID: 2, Err: &Error{Code: "replay", Message: "step already ran"}},
	}
	for _, f := range in {
		if err := WriteFrame(&buf, f); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range in {
		got, err := ReadFrame(&buf)
		if err != nil {
			t.Fatal(err)
		}
		if got.ID != want.ID || got.Op != want.Op || !bytes.Equal(got.Body, want.Body) {
			t.Fatalf("got %+v, want %+v", got, want)
		}
		if (got.Err == nil) != (want.Err == nil) || (got.Err != nil && *got.Err != *want.Err) {
			t.Fatalf("err: got %v, want %v", got.Err, want.Err)
		}
	}
	var rr RunRequest
	if err := Unmarshal(body, &rr); err != nil || string(rr.Envelope) != "sealed" {
		t.Fatalf("body round trip: %v %+v", err, rr)
	}
	if _, err := ReadFrame(&buf); !errors.Is(err, io.EOF) {
		t.Fatalf("want io.EOF at end, got %v", err)
	}
}

func TestFrameLimits(t *testing.T) {
	tests := []struct {
		name  string
		input []byte
		want  error
	}{
		{"oversize length", binary.BigEndian.AppendUint32(nil, MaxFrame+1), ErrFrameTooLarge},
		{"truncated header", []byte{0, 0}, io.ErrUnexpectedEOF},
		{"truncated body", append(binary.BigEndian.AppendUint32(nil, 10), 1, 2), io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReadFrame(bytes.NewReader(tt.input))
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
	t.Run("malformed cbor", func(t *testing.T) {
		in := append(binary.BigEndian.AppendUint32(nil, 2), 0xff, 0xff)
		if _, err := ReadFrame(bytes.NewReader(in)); err == nil {
			t.Fatal("want error for malformed CBOR")
		}
	})
}

func FuzzReadFrame(f *testing.F) {
	var buf bytes.Buffer
	_ = WriteFrame(&buf, &Frame{ID: 7, Op: OpLoad, Body: []byte{0xa0}})
	f.Add(buf.Bytes())
	f.Add([]byte{0, 0, 0, 1, 0xa0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		fr, err := ReadFrame(bytes.NewReader(data))
		if err != nil {
			return
		}
		var out bytes.Buffer
		if err := WriteFrame(&out, fr); err != nil {
			t.Fatalf("re-encode a decoded frame: %v", err)
		}
		for _, v := range []any{&Hello{}, &AttestRequest{}, &LoadRequest{}, &RunRequest{}, &RunReply{}} {
			_ = Unmarshal(fr.Body, v)
		}
	})
}

// BenchmarkWriteFrame is one run reply's frame written to a pipe-like
// writer (pooled buffer, one write).
func BenchmarkWriteFrame(b *testing.B) {
	body, err := Marshal(make([]byte, 4<<10)) // a CBOR body of 4 KiB
	if err != nil {
		b.Fatal(err)
	}
	f := &Frame{ID: 7, Op: OpRun, Body: body}
	b.ReportAllocs()
	for b.Loop() {
		if err := WriteFrame(io.Discard, f); err != nil {
			b.Fatal(err)
		}
	}
}
