package gateway

import (
	"context"
	"crypto/hmac"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/store"
)

// The admin API (like OpenWhisk's wskadmin user commands) manages
// namespaces and their credentials:
//
//	POST   /admin/v1/namespaces               {"name": NS} → 201 {namespace, uuid, key, auth}
//	GET    /admin/v1/namespaces               → [{namespace, uuid, created}]
//	DELETE /admin/v1/namespaces/{name}        → {namespace, deleted}
//	POST   /admin/v1/namespaces/{name}/rotate → {namespace, uuid, key, auth}
//	GET|PUT|DELETE /admin/v1/namespaces/{name}/limits → limits and retention (nslimits.go)
//
// It is authenticated with the admin credential, HTTP Basic
// "admin:<64 hex key>". The admin credential is not a namespace credential:
// it is stored apart (auth bucket key "admin") with a tag under its own MAC
// context, so it authenticates nothing under /api/v1 and no namespace
// credential (whose user part must be a uuid) authenticates the admin API.
// Like namespace keys, only the tag is stored: whoever controls the store
// can delete the admin credential but not read or forge one.
const (
	// AdminUser is the user part of the admin credential.
	AdminUser    = "admin"
	adminContext = "clemmys/v1 admin credential\x00"
	adminPrefix  = "/admin/v1/namespaces"
)

// creatableNamespace is OpenWhisk's namespace name rule, except "_": in
// paths it stands for the caller's own namespace.
func creatableNamespace(ns string) bool { return validNamespace(ns) && ns != "_" }

func adminKey() string { return store.Key(AdminUser) }

// NewAdminCredential creates (or replaces) the admin credential and returns
// it as "admin:key". A replaced credential stops working.
func (g *Gateway) NewAdminCredential(ctx context.Context) (string, error) {
	_, key := newCredential()
	c := credential{UUID: AdminUser, Tag: g.credMAC(adminContext, "", AdminUser, key), Created: g.now().UnixMilli()}
	v, err := bus.Marshal(&c)
	if err != nil {
		return "", fmt.Errorf("gateway: encode admin credential: %w", err)
	}
	if _, err := g.auth.Put(ctx, adminKey(), v); err != nil {
		return "", fmt.Errorf("gateway: store admin credential: %w", err)
	}
	g.log.Info("admin credential created")
	return AdminUser + ":" + key, nil
}

// CreateAdminCredential creates the admin credential if there is none and
// returns it as "admin:key"; it reports false, and no credential, if one
// exists already (several gateways sharing the store: only the first one
// makes it).
func (g *Gateway) CreateAdminCredential(ctx context.Context) (string, bool, error) {
	_, key := newCredential()
	c := credential{UUID: AdminUser, Tag: g.credMAC(adminContext, "", AdminUser, key), Created: g.now().UnixMilli()}
	v, err := bus.Marshal(&c)
	if err != nil {
		return "", false, fmt.Errorf("gateway: encode admin credential: %w", err)
	}
	if _, err := g.auth.Create(ctx, adminKey(), v); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return "", false, nil
		}
		return "", false, fmt.Errorf("gateway: store admin credential: %w", err)
	}
	g.log.Info("admin credential created")
	return AdminUser + ":" + key, true, nil
}

// CheckAdmin reports whether user:key is the admin credential.
func (g *Gateway) CheckAdmin(ctx context.Context, user, key string) bool {
	if user != AdminUser || key == "" || len(key) > maxKeyLen {
		return false
	}
	e, err := g.auth.Get(ctx, adminKey())
	if err != nil {
		if !errors.Is(err, jetstream.ErrKeyNotFound) {
			g.log.Warn("load admin credential", "err", err)
		}
		return false
	}
	var c credential
	if err := bus.Unmarshal(e.Value(), &c); err != nil || c.UUID != AdminUser {
		return false
	}
	return hmac.Equal(c.Tag, g.credMAC(adminContext, "", AdminUser, key))
}

// NamespaceInfo describes a namespace for the admin API.
type NamespaceInfo struct {
	Namespace string    `json:"namespace"`
	UUID      string    `json:"uuid"`
	Created   time.Time `json:"created"` // when its current key was issued
}

// ListNamespaces returns every namespace that has a credential, by name.
func (g *Gateway) ListNamespaces(ctx context.Context) ([]NamespaceInfo, error) {
	lister, err := g.auth.ListKeysFiltered(ctx, store.Prefix("ns"))
	if err != nil {
		return nil, fmt.Errorf("gateway: list namespaces: %w", err)
	}
	out := []NamespaceInfo{}
	for k := range lister.Keys() {
		parts, err := store.SplitKey(k)
		if err != nil || len(parts) != 2 {
			continue
		}
		e, err := g.auth.Get(ctx, k)
		if err != nil {
			continue // deleted meanwhile
		}
		var c credential
		if err := bus.Unmarshal(e.Value(), &c); err != nil || c.Namespace != parts[1] {
			continue
		}
		out = append(out, NamespaceInfo{Namespace: c.Namespace, UUID: c.UUID, Created: time.UnixMilli(c.Created).UTC()})
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Namespace < out[j].Namespace })
	return out, nil
}

// adminRoutes registers the admin API on mux.
func (g *Gateway) adminRoutes(mux *http.ServeMux) {
	handle := func(pattern string, h http.HandlerFunc) { mux.Handle(pattern, g.adminOnly(h)) }
	handle("POST "+adminPrefix, g.adminCreateNamespace)
	handle("GET "+adminPrefix, g.adminListNamespaces)
	handle("DELETE "+adminPrefix+"/{name}", g.adminDeleteNamespace)
	handle("POST "+adminPrefix+"/{name}/rotate", g.adminRotateKey)
	handle("GET "+adminPrefix+"/{name}/limits", g.adminGetLimits)
	handle("PUT "+adminPrefix+"/{name}/limits", g.adminPutLimits)
	handle("DELETE "+adminPrefix+"/{name}/limits", g.adminDeleteLimits)
}

// adminOnly lets through requests with the admin credential.
func (g *Gateway) adminOnly(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, k, ok := r.BasicAuth()
		if !ok || !g.CheckAdmin(r.Context(), u, k) {
			w.Header().Set("WWW-Authenticate", `Basic realm="clemmys admin"`)
			g.fail(w, r, http.StatusUnauthorized, msgUnauthorized)
			return
		}
		h(w, r)
	})
}

// credentialBody is the answer to create and rotate.
type credentialBody struct {
	Namespace string `json:"namespace"`
	UUID      string `json:"uuid"`
	Key       string `json:"key"`
	Auth      string `json:"auth"`
}

func (g *Gateway) adminCreateNamespace(w http.ResponseWriter, r *http.Request) {
	raw, ok := g.readBody(w, r, 64<<10)
	if !ok {
		return
	}
	var body struct {
		Name string `json:"name"`
	}
	if err := json.Unmarshal(raw, &body); err != nil {
		g.fail(w, r, http.StatusBadRequest, "The request content was malformed: %s; the body must be {\"name\": NAMESPACE}.", jsonDetail(raw, err))
		return
	}
	if !creatableNamespace(body.Name) {
		g.fail(w, r, http.StatusBadRequest, "The namespace name is not valid: letters, digits, _, @, ., - and spaces (not first or last), at most 256 characters; \"_\" is reserved.")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), busTimeout)
	defer cancel()
	uuid, key, err := g.CreateNamespace(ctx, body.Name)
	if errors.Is(err, ErrNamespaceExists) {
		g.fail(w, r, http.StatusConflict, msgConflict)
		return
	}
	if err != nil {
		g.adminError(w, r, "create namespace", err)
		return
	}
	writeJSON(w, http.StatusCreated, credentialBody{Namespace: body.Name, UUID: uuid, Key: key, Auth: uuid + ":" + key})
}

func (g *Gateway) adminListNamespaces(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), busTimeout)
	defer cancel()
	list, err := g.ListNamespaces(ctx)
	if err != nil {
		g.adminError(w, r, "list namespaces", err)
		return
	}
	writeJSON(w, http.StatusOK, list)
}

func (g *Gateway) adminDeleteNamespace(w http.ResponseWriter, r *http.Request) {
	ns := r.PathValue("name")
	ctx, cancel := context.WithTimeout(r.Context(), busTimeout)
	defer cancel()
	if err := g.DeleteNamespace(ctx, ns); err != nil {
		g.adminError(w, r, "delete namespace", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"namespace": ns, "deleted": true})
}

func (g *Gateway) adminRotateKey(w http.ResponseWriter, r *http.Request) {
	ns := r.PathValue("name")
	ctx, cancel := context.WithTimeout(r.Context(), busTimeout)
	defer cancel()
	uuid, key, err := g.RotateKey(ctx, ns)
	if err != nil {
		g.adminError(w, r, "rotate key", err)
		return
	}
	writeJSON(w, http.StatusOK, credentialBody{Namespace: ns, UUID: uuid, Key: key, Auth: uuid + ":" + key})
}

// adminError answers a failed namespace operation.
func (g *Gateway) adminError(w http.ResponseWriter, r *http.Request, what string, err error) {
	if errors.Is(err, ErrNoNamespace) {
		g.fail(w, r, http.StatusNotFound, msgNotFound)
		return
	}
	g.log.Error(what, "tx", txID(r), "err", err)
	g.fail(w, r, http.StatusInternalServerError, msgInternal)
}
