package statefulroute

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/stateful-route/stateful-route/clients/go/internal/luarule"
)

// canonical is the project's lua folder, where the Python client loads the scripts from.
const canonical = "../../operator/stateful_route/store/lua"

func canonicalDir(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(filepath.Join(canonical, "scripts.sha1.json")); err != nil {
		if _, repo := os.Stat("../../pyproject.toml"); repo == nil {
			t.Fatalf("the repository's Lua scripts are missing: %v", err)
		}
		t.Skip("not inside the stateful-route repository: no canonical scripts to compare with")
	}
	return canonical
}

// The embedded scripts are byte for byte the canonical ones resolved by the include rule, and
// every one has the SHA1 the canonical manifest pins: the Go and Python clients send the same
// scripts. Fails after a change to a .lua file until `go generate` copies it.
func TestEmbeddedScriptsAreTheCanonicalOnes(t *testing.T) {
	dir := canonicalDir(t)
	want, err := luarule.ResolveAll(os.DirFS(dir))
	if err != nil {
		t.Fatal(err)
	}
	manifest, err := os.ReadFile(filepath.Join(dir, "scripts.sha1.json"))
	if err != nil {
		t.Fatal(err)
	}
	pinned, err := luarule.ParseManifest(manifest)
	if err != nil {
		t.Fatal(err)
	}
	got, err := luarule.Names(mustSub(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(pinned) {
		t.Fatalf("embedded scripts %v, the manifest pins %d: run go generate", got, len(pinned))
	}
	embeddedManifest, _ := luaFiles.ReadFile("lua/scripts.sha1.json")
	if !bytes.Equal(embeddedManifest, manifest) {
		t.Errorf("lua/scripts.sha1.json differs from %s/scripts.sha1.json: run go generate", dir)
	}
	for _, name := range got {
		src := []byte(scriptSource(name))
		if sum := luarule.SHA1(src); sum != pinned[name] {
			t.Errorf("%s: embedded SHA1 %s, the manifest pins %s: run go generate", name, sum, pinned[name])
		}
		if !bytes.Equal(src, want[name]) {
			t.Errorf("%s: the embedded script is not the canonical one resolved: run go generate", name)
		}
		if ScriptSHA1s()[name] != pinned[name] {
			t.Errorf("%s: ScriptSHA1s disagrees with the manifest", name)
		}
	}
	// The scripts the client runs carry the pinned names (go-redis computes them the same way).
	for name, s := range map[string]interface{ Hash() string }{
		"place": scriptPlace, "if_absent": scriptIfAbsent, "read": scriptRead,
		"snapshot": scriptSnapshot, "write_table": scriptWriteTable, "configure": scriptConfigure,
		"set_persistent": scriptPersistent,
	} {
		if s.Hash() != pinned[name] {
			t.Errorf("%s: go-redis names it %s, the manifest %s", name, s.Hash(), pinned[name])
		}
	}
}

func mustSub(t *testing.T) fs.FS {
	t.Helper()
	sub, err := fs.Sub(luaFiles, "lua")
	if err != nil {
		t.Fatal(err)
	}
	return sub
}
