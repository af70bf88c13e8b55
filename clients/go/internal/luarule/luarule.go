// Package luarule resolves the project's Lua scripts by the include rule of
// operator/stateful_route/store/lua/README.md, the same rule the Python client follows, so
// that both send byte-identical scripts. It is used by the generator (internal/luagen) that
// copies the resolved scripts into this module, and by the test that checks the copy.
package luarule

import (
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"regexp"
	"sort"
	"strings"
)

const directive = "--- @include"

var includeLine = regexp.MustCompile(`^--- @include "([a-z][a-z0-9_]*)"$`)

// Names lists the scripts of root: its *.lua files without ".lua", sorted.
func Names(root fs.FS) ([]string, error) {
	entries, err := fs.ReadDir(root, ".")
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".lua") {
			names = append(names, strings.TrimSuffix(e.Name(), ".lua"))
		}
	}
	sort.Strings(names)
	return names, nil
}

// lines splits a Lua file into lines, each with its "\n" (rule 1: UTF-8, LF only, ends with LF).
func lines(root fs.FS, path string) ([]string, error) {
	data, err := fs.ReadFile(root, path)
	if err != nil {
		return nil, err
	}
	if bytes.ContainsRune(data, '\r') || !bytes.HasSuffix(data, []byte("\n")) {
		return nil, fmt.Errorf("%s: Lua files have LF line ends and end with one", path)
	}
	parts := strings.SplitAfter(string(data), "\n")
	return parts[:len(parts)-1], nil // the text after the last "\n" is empty
}

// Resolve returns the script <name>.lua of root as Redis runs it: each include line replaced
// by the whole of include/<NAME>.lua, nothing else changed (rules 3-5).
func Resolve(root fs.FS, name string) ([]byte, error) {
	script, err := lines(root, name+".lua")
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	seen := map[string]bool{}
	for _, line := range script {
		if !strings.HasPrefix(line, directive) {
			out.WriteString(line)
			continue
		}
		m := includeLine.FindStringSubmatch(strings.TrimSuffix(line, "\n"))
		if m == nil {
			return nil, fmt.Errorf("%s.lua: malformed include line %q", name, line)
		}
		if seen[m[1]] {
			return nil, fmt.Errorf("%s.lua: includes %q twice", name, m[1])
		}
		seen[m[1]] = true
		included, err := lines(root, "include/"+m[1]+".lua")
		if err != nil {
			return nil, err
		}
		for _, part := range included {
			if strings.HasPrefix(part, directive) {
				return nil, fmt.Errorf("include/%s.lua: an include file must not include", m[1])
			}
			out.WriteString(part)
		}
	}
	return out.Bytes(), nil
}

// SHA1 is the name Redis gives a script (SCRIPT LOAD, EVALSHA): lowercase hex (rule 6).
func SHA1(script []byte) string {
	sum := sha1.Sum(script)
	return hex.EncodeToString(sum[:])
}

// ResolveAll resolves every script of root.
func ResolveAll(root fs.FS) (map[string][]byte, error) {
	names, err := Names(root)
	if err != nil {
		return nil, err
	}
	out := make(map[string][]byte, len(names))
	for _, n := range names {
		if out[n], err = Resolve(root, n); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Manifest is the text of scripts.sha1.json for scripts: keys sorted, two-space indent, LF at
// the end (what Python's json.dumps(..., indent=2, sort_keys=True) + "\n" writes).
func Manifest(scripts map[string][]byte) []byte {
	sums := make(map[string]string, len(scripts))
	for n, s := range scripts {
		sums[n] = SHA1(s)
	}
	data, _ := json.MarshalIndent(sums, "", "  ") // a map marshals with sorted keys
	return append(data, '\n')
}

// ParseManifest reads scripts.sha1.json.
func ParseManifest(data []byte) (map[string]string, error) {
	var sums map[string]string
	if err := json.Unmarshal(data, &sums); err != nil {
		return nil, fmt.Errorf("scripts.sha1.json: %w", err)
	}
	return sums, nil
}
