package luarule

import (
	"strings"
	"testing"
	"testing/fstest"
)

// The rule's errors (lua/README.md), as tests/store/test_lua_files.py checks them in Python.
func TestTheIncludeRule(t *testing.T) {
	files := fstest.MapFS{
		"ok.lua":           {Data: []byte("#!lua flags=no-writes\n--- @include \"a\"\nreturn f()\n")},
		"include/a.lua":    {Data: []byte("local function f() return 1 end\n")},
		"twice.lua":        {Data: []byte("--- @include \"a\"\n--- @include \"a\"\n")},
		"malformed.lua":    {Data: []byte("--- @include a\n")},
		"spaced.lua":       {Data: []byte("--- @include  \"a\"\n")},
		"nested.lua":       {Data: []byte("--- @include \"b\"\n")},
		"include/b.lua":    {Data: []byte("--- @include \"a\"\n")},
		"crlf.lua":         {Data: []byte("return 1\r\n")},
		"unterminated.lua": {Data: []byte("return 1")},
		"missing.lua":      {Data: []byte("--- @include \"zz\"\n")},
	}
	got, err := Resolve(files, "ok")
	if err != nil || string(got) != "#!lua flags=no-writes\nlocal function f() return 1 end\nreturn f()\n" {
		t.Fatalf("ok: %q %v", got, err)
	}
	for name, says := range map[string]string{
		"twice": "twice", "malformed": "malformed", "spaced": "malformed", "nested": "must not include",
		"crlf": "LF", "unterminated": "LF", "missing": "include/zz.lua",
	} {
		if _, err := Resolve(files, name); err == nil || !strings.Contains(err.Error(), says) {
			t.Errorf("%s: want an error saying %q, got %v", name, says, err)
		}
	}
	if m := string(Manifest(map[string][]byte{"b": []byte("x"), "a": []byte("")})); m !=
		"{\n  \"a\": \"da39a3ee5e6b4b0d3255bfef95601890afd80709\",\n  \"b\": \"11f6ad8ec52a2984abaafd7c3b516503785c2072\"\n}\n" {
		t.Errorf("manifest text: %q", m)
	}
}
