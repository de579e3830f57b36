package platform_test

import (
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
)

var credRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}:[0-9a-f]{64}$`)

type credentialAnswer struct {
	Namespace, UUID, Key, Auth string
}

// TestAdminAPI drives the namespace admin API: only the admin credential
// opens it, created namespaces get working and isolated credentials, and a
// rotated or deleted namespace's key is refused.
func TestAdminAPI(t *testing.T) {
	dir := t.TempDir()
	e := start(t, dir)
	admin := e.p.AdminAuth

	// The admin credential is in the data dir, 0600, and verifies.
	b, err := os.ReadFile(e.p.AdminCredentialPath())
	if err != nil || strings.TrimSpace(string(b)) != admin || !regexp.MustCompile(`^admin:[0-9a-f]{64}$`).MatchString(admin) {
		t.Fatalf("admin-credential: %q, %v (platform: %q)", b, err, admin)
	}
	if fi, err := os.Stat(e.p.AdminCredentialPath()); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin-credential mode: %v %v", fi.Mode(), err)
	}

	// Only the admin credential opens the admin API, and it opens nothing else.
	wrongKey := "admin:" + strings.Repeat("0", 64)
	for _, auth := range []string{"", e.guest(), wrongKey, "admin:", strings.Replace(e.guest(), ":", "x:", 1)} {
		var eb errorBody
		if st, _ := e.call(auth, "GET", "/admin/v1/namespaces", nil, &eb); st != http.StatusUnauthorized || eb.Code == "" {
			t.Errorf("admin list with %q: %d %+v", auth, st, eb)
		}
		if st, _ := e.call(auth, "POST", "/admin/v1/namespaces", map[string]string{"name": "mallory"}, nil); st != http.StatusUnauthorized {
			t.Errorf("admin create with %q: %d", auth, st)
		}
	}
	if st, _ := e.call(admin, "GET", "/api/v1/namespaces/_/actions", nil, nil); st != http.StatusUnauthorized {
		t.Fatalf("the admin credential must not act as a namespace: %d", st)
	}

	// Create.
	var alice credentialAnswer
	if st, _ := e.call(admin, "POST", "/admin/v1/namespaces", map[string]string{"name": "alice"}, &alice); st != http.StatusCreated ||
		alice.Namespace != "alice" || !credRE.MatchString(alice.Auth) || alice.Auth != alice.UUID+":"+alice.Key || len(alice.Key) != 64 {
		t.Fatalf("create: %d %+v", st, alice)
	}
	if st, _ := e.call(admin, "POST", "/admin/v1/namespaces", map[string]string{"name": "alice"}, nil); st != http.StatusConflict {
		t.Fatalf("create again: %d", st)
	}
	for _, bad := range []string{"", "$admin", "a/b", " x", "x ", strings.Repeat("n", 257), "_"} {
		if st, _ := e.call(admin, "POST", "/admin/v1/namespaces", map[string]string{"name": bad}, nil); st != http.StatusBadRequest {
			t.Errorf("create %q: %d", bad, st)
		}
	}
	if st, _ := e.call(admin, "POST", "/admin/v1/namespaces", []byte("not json"), nil); st != http.StatusBadRequest {
		t.Errorf("create with a malformed body: %d", st)
	}

	// The new credential works, in its own namespace only.
	var nss []string
	if st, _ := e.call(alice.Auth, "GET", "/api/v1/namespaces", nil, &nss); st != 200 || len(nss) != 1 || nss[0] != "alice" {
		t.Fatalf("alice's namespaces: %d %v", st, nss)
	}
	if st, _ := e.call(alice.Auth, "GET", "/api/v1/namespaces/guest/actions", nil, nil); st != http.StatusForbidden {
		t.Fatalf("alice reads guest's actions: %d", st)
	}
	if st, _ := e.call(e.guest(), "GET", "/api/v1/namespaces/alice/actions", nil, nil); st != http.StatusForbidden {
		t.Fatalf("guest reads alice's actions: %d", st)
	}

	// List.
	var list []struct {
		Namespace, UUID string
		Created         string
	}
	if st, _ := e.call(admin, "GET", "/admin/v1/namespaces", nil, &list); st != 200 {
		t.Fatalf("list: %d", st)
	}
	got := map[string]string{}
	for _, n := range list {
		got[n.Namespace] = n.UUID
		if n.Created == "" {
			t.Errorf("no creation time: %+v", n)
		}
	}
	if got["alice"] != alice.UUID || got["guest"] != strings.Split(e.guest(), ":")[0] {
		t.Fatalf("list: %+v", list)
	}

	// Rotate: the old key stops working, the new one works.
	var rotated credentialAnswer
	if st, _ := e.call(admin, "POST", "/admin/v1/namespaces/alice/rotate", nil, &rotated); st != 200 || !credRE.MatchString(rotated.Auth) || rotated.Auth == alice.Auth {
		t.Fatalf("rotate: %d %+v", st, rotated)
	}
	if st, _ := e.call(alice.Auth, "GET", "/api/v1/namespaces", nil, nil); st != http.StatusUnauthorized {
		t.Fatalf("old key after rotation: %d", st)
	}
	if st, _ := e.call(rotated.Auth, "GET", "/api/v1/namespaces", nil, nil); st != 200 {
		t.Fatalf("new key after rotation: %d", st)
	}
	if st, _ := e.call(admin, "POST", "/admin/v1/namespaces/nobody/rotate", nil, nil); st != http.StatusNotFound {
		t.Fatalf("rotate a missing namespace: %d", st)
	}

	// Delete: the key gets 401 at once, the namespace is gone from the list,
	// a second delete is 404.
	if st, _ := e.call(admin, "DELETE", "/admin/v1/namespaces/alice", nil, nil); st != 200 {
		t.Fatalf("delete: %d", st)
	}
	if st, _ := e.call(rotated.Auth, "GET", "/api/v1/namespaces/_/actions", nil, nil); st != http.StatusUnauthorized {
		t.Fatalf("deleted namespace's key: %d", st)
	}
	if st, _ := e.call(admin, "DELETE", "/admin/v1/namespaces/alice", nil, nil); st != http.StatusNotFound {
		t.Fatalf("delete again: %d", st)
	}
	list = nil
	e.call(admin, "GET", "/admin/v1/namespaces", nil, &list)
	for _, n := range list {
		if n.Namespace == "alice" {
			t.Fatalf("deleted namespace still listed: %+v", list)
		}
	}

	// A restart keeps the admin credential; a stale file gets a new one.
	e.p.Stop()
	e2 := start(t, dir)
	if e2.p.AdminAuth != admin {
		t.Fatal("admin credential changed across restart")
	}
	if err := os.WriteFile(e2.p.AdminCredentialPath(), []byte(wrongKey+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e2.p.Stop()
	e3 := start(t, dir)
	if e3.p.AdminAuth == admin || e3.p.AdminAuth == wrongKey {
		t.Fatal("a stale admin-credential file was not replaced")
	}
	if fi, err := os.Stat(e3.p.AdminCredentialPath()); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("replaced admin-credential mode: %v %v", fi.Mode(), err)
	}
	if st, _ := e3.call(admin, "GET", "/admin/v1/namespaces", nil, nil); st != http.StatusUnauthorized {
		t.Fatalf("replaced admin credential still works: %d", st)
	}
	if st, _ := e3.call(e3.p.AdminAuth, "GET", "/admin/v1/namespaces", nil, nil); st != 200 {
		t.Fatalf("new admin credential: %d", st)
	}
}
