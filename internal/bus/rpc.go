package bus

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/nats-io/nats.go"

	"github.com/clemmys/clemmys/internal/wire"
)

var (
	encMode cbor.UserBufferEncMode
	decMode cbor.DecMode
)

func init() {
	var err error
	encMode, err = cbor.CoreDetEncOptions().UserBufferEncMode()
	if err != nil {
		panic(err)
	}
	decMode, err = cbor.DecOptions{
		MaxArrayElements: 1 << 20,
		MaxMapPairs:      1 << 16,
		MaxNestedLevels:  32,
	}.DecMode()
	if err != nil {
		panic(err)
	}
}

// Marshal encodes v as deterministic CBOR.
func Marshal(v any) ([]byte, error) { return encMode.Marshal(v) }

// Unmarshal decodes CBOR data into v with bounded nesting and lengths.
func Unmarshal(data []byte, v any) error { return decMode.Unmarshal(data, v) }

// reply is the frame of every response: exactly one of Err or Body is set.
type reply struct {
	Err  *wire.Error     `cbor:"1,keyasint,omitempty"`
	Body cbor.RawMessage `cbor:"2,keyasint,omitempty"`
}

// bodyHead is how the CBOR of a reply with only a Body begins: a map of one
// pair (0xa1) whose key is 2. The body's own encoding follows as it is, so
// a body is encoded straight after these two bytes and decoded from after
// them: once each way, not again inside the frame.
var bodyHead = [2]byte{0xa1, 0x02}

// Call sends req to subject and decodes the response into resp (which may be
// nil). A *wire.Error returned by the remote handler is returned as is, so
// callers can branch on its code with errors.As.
func Call(ctx context.Context, nc *nats.Conn, subject string, req, resp any) error {
	data, err := Marshal(req)
	if err != nil {
		return fmt.Errorf("bus: encode %s: %w", subject, err)
	}
	msg, err := nc.RequestWithContext(ctx, subject, data)
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) {
			return &wire.Error{Code: wire.CodeUnavailable, Message: "service unavailable: " + subject}
		}
		return fmt.Errorf("bus: request %s: %w", subject, err)
	}
	if d := msg.Data; len(d) > len(bodyHead) && [2]byte(d) == bodyHead {
		// The common reply, a Body: decoding it from after the head
		// checks what Unmarshal of the frame would (one well-formed item,
		// nothing after it) without decoding it twice.
		if resp == nil {
			return nil
		}
		if err := Unmarshal(d[len(bodyHead):], resp); err != nil {
			return fmt.Errorf("bus: decode body of %s: %w", subject, err)
		}
		return nil
	}
	var r reply
	if err := Unmarshal(msg.Data, &r); err != nil {
		return fmt.Errorf("bus: decode reply of %s: %w", subject, err)
	}
	if r.Err != nil {
		return r.Err
	}
	if resp == nil {
		return nil
	}
	if err := Unmarshal(r.Body, resp); err != nil {
		return fmt.Errorf("bus: decode body of %s: %w", subject, err)
	}
	return nil
}

// Handler serves one request. data is the raw CBOR request. A returned
// *wire.Error (possibly wrapped) is sent to the caller as is; any other error
// is logged and the caller sees only a generic internal error.
type Handler func(ctx context.Context, data []byte) (any, error)

// workerIdle is how long a Serve worker with nothing to do waits for the
// next request before it exits.
const workerIdle = 30 * time.Second

// serveFlushTimeout bounds Serve's wait for the server to confirm its
// subscription.
const serveFlushTimeout = 2 * time.Second

// Serve subscribes h to subject in queue group queue (empty: no group).
// Requests run on worker goroutines, at most limit at a time (0: 64); when
// all are busy the subscription's delivery waits (backpressure: NATS
// buffers pending messages). ctx is cancelled when the returned stop
// function is called; stop waits for running handlers, and a request that
// arrives while it stops is answered "unavailable" at once rather than left
// to time out. Serve returns once the server has the subscription (when
// connected), so a request sent after it finds its responder.
//
// A worker serves requests one after another and exits after workerIdle
// without one: it keeps the stack the decoders grew (a fresh goroutine per
// request grew and copied its stack on nearly every request, ~4% of a warm
// invocation's CPU) and saves a goroutine start per request.
func Serve(ctx context.Context, nc *nats.Conn, log *slog.Logger, subject, queue string, limit int, h Handler) (stop func(), err error) {
	if limit <= 0 {
		limit = 64
	}
	ctx, cancel := context.WithCancel(ctx)
	sem := make(chan struct{}, limit) // one token per live worker
	work := make(chan *nats.Msg)      // to an idle worker
	var (
		mu       sync.Mutex // guards stopping and wg.Add against wg.Wait
		stopping bool
		wg       sync.WaitGroup
	)
	unavailable := func(m *nats.Msg) {
		sendReply(log, subject, m, &reply{Err: &wire.Error{Code: wire.CodeUnavailable, Message: "service stopping: " + subject}})
	}
	worker := func(m *nats.Msg) {
		defer wg.Done()
		defer func() { <-sem }()
		idle := time.NewTimer(workerIdle)
		defer idle.Stop()
		for {
			respond(ctx, log, subject, m, h)
			idle.Reset(workerIdle)
			select {
			case m = <-work:
			case <-idle.C:
				return
			case <-ctx.Done():
				return
			}
		}
	}
	handle := func(m *nats.Msg) {
		select {
		case work <- m: // an idle worker
			return
		default:
		}
		select {
		case work <- m:
			return
		case sem <- struct{}{}: // room for another worker
		case <-ctx.Done():
			unavailable(m)
			return
		}
		mu.Lock()
		if stopping {
			mu.Unlock()
			<-sem
			unavailable(m)
			return
		}
		wg.Add(1)
		mu.Unlock()
		go worker(m)
	}
	var sub *nats.Subscription
	if queue != "" {
		sub, err = nc.QueueSubscribe(subject, queue, handle)
	} else {
		sub, err = nc.Subscribe(subject, handle)
	}
	if err != nil {
		cancel()
		return nil, fmt.Errorf("bus: subscribe %s: %w", subject, err)
	}
	// The subscription reaches the server asynchronously: a request sent
	// right after Serve returned (by this process or, once it announced
	// itself, by another) could find no responder. A round trip to the
	// server makes sure it has the subscription; while disconnected the
	// client re-subscribes when it reconnects, so a failed flush is not an
	// error.
	_ = nc.FlushTimeout(serveFlushTimeout)
	var once sync.Once
	return func() {
		once.Do(func() {
			mu.Lock()
			stopping = true
			mu.Unlock()
			// Drain: no new deliveries; pending ones are answered
			// "unavailable" by handle.
			if sub.Drain() == nil {
				deadline := time.Now().Add(2 * time.Second)
				for sub.IsValid() && time.Now().Before(deadline) {
					time.Sleep(5 * time.Millisecond)
				}
			}
			cancel()
			wg.Wait()
		})
	}, nil
}

func respond(ctx context.Context, log *slog.Logger, subject string, m *nats.Msg, h Handler) {
	var r reply
	defer func() {
		if p := recover(); p != nil {
			log.Error("bus handler panic", "subject", subject, "panic", fmt.Sprint(p))
			r = reply{Err: &wire.Error{Code: wire.CodeInternal, Message: "internal error"}}
			sendReply(log, subject, m, &r)
		}
	}()
	body, err := h(ctx, m.Data)
	if err != nil {
		var we *wire.Error
		if errors.As(err, &we) {
			r.Err = we
		} else {
			log.Error("bus handler failed", "subject", subject, "err", err)
			r.Err = &wire.Error{Code: wire.CodeInternal, Message: "internal error"}
		}
	} else if body != nil && m.Reply != "" {
		data, err := bodyFrame(body)
		if err == nil {
			respondWith(log, subject, m, data)
			return
		}
		log.Error("bus encode reply", "subject", subject, "err", err)
		r.Err = &wire.Error{Code: wire.CodeInternal, Message: "internal error"}
	}
	sendReply(log, subject, m, &r)
}

// Encoded is a reply body a handler has already encoded with Marshal
// (say, the value it just stored): it is sent as it is, not encoded
// again. It must be one well-formed item from Marshal; the caller decodes
// it strictly as it would any reply.
type Encoded []byte

// bodyFrame is the reply frame of body: bodyHead, then body's encoding.
func bodyFrame(body any) ([]byte, error) {
	if e, ok := body.(Encoded); ok {
		if len(e) == 0 {
			return nil, errors.New("bus: empty encoded body")
		}
		return append(append(make([]byte, 0, len(bodyHead)+len(e)), bodyHead[:]...), e...), nil
	}
	var buf bytes.Buffer
	buf.Write(bodyHead[:])
	if err := encMode.MarshalToBuffer(body, &buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func sendReply(log *slog.Logger, subject string, m *nats.Msg, r *reply) {
	if m.Reply == "" {
		return
	}
	data, err := Marshal(r)
	if err != nil {
		log.Error("bus encode reply frame", "subject", subject, "err", err)
		return
	}
	respondWith(log, subject, m, data)
}

// respondWith sends an encoded reply frame to m's requester.
func respondWith(log *slog.Logger, subject string, m *nats.Msg, data []byte) {
	if m.Reply == "" {
		return
	}
	if err := m.Respond(data); err != nil {
		log.Warn("bus respond", "subject", subject, "err", err)
	}
}

// Decode is a helper for handlers: it decodes data into a new T or returns a
// bad-request wire error.
func Decode[T any](data []byte) (*T, error) {
	v := new(T)
	if err := Unmarshal(data, v); err != nil {
		return nil, &wire.Error{Code: wire.CodeBadRequest, Message: "malformed request"}
	}
	return v, nil
}
