// Command luagen copies the project's Lua scripts into this module, resolved, for //go:embed
// (which cannot reach files outside the module). Run by `go generate` from the module root:
//
//	go run ./internal/luagen -src ../../operator/stateful_route/store/lua -dst lua
//
// It resolves every script of -src by the include rule (internal/luarule), refuses to write
// anything unless each resolved script's SHA1 is the one the canonical manifest
// (-src/scripts.sha1.json, written by the Python side) pins, then replaces -dst/*.lua with the
// resolved scripts and copies the manifest beside them.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/stateful-route/stateful-route/clients/go/internal/luarule"
)

func main() {
	src := flag.String("src", "../../operator/stateful_route/store/lua", "the canonical lua folder")
	dst := flag.String("dst", "lua", "where the resolved scripts go")
	flag.Parse()
	if err := run(*src, *dst); err != nil {
		fmt.Fprintln(os.Stderr, "luagen:", err)
		os.Exit(1)
	}
}

func run(src, dst string) error {
	scripts, err := luarule.ResolveAll(os.DirFS(src))
	if err != nil {
		return err
	}
	manifest, err := os.ReadFile(filepath.Join(src, "scripts.sha1.json"))
	if err != nil {
		return err
	}
	if !bytes.Equal(luarule.Manifest(scripts), manifest) {
		return fmt.Errorf("the resolved scripts do not match %s/scripts.sha1.json: rewrite it "+
			"(python -m stateful_route.store.lua_tool manifest) or fix the include rule", src)
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	stale, err := filepath.Glob(filepath.Join(dst, "*.lua"))
	if err != nil {
		return err
	}
	for _, f := range stale {
		if err := os.Remove(f); err != nil {
			return err
		}
	}
	names := make([]string, 0, len(scripts))
	for n := range scripts {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(dst, n+".lua"), scripts[n], 0o644); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(dst, "scripts.sha1.json"), manifest, 0o644); err != nil {
		return err
	}
	fmt.Printf("luagen: %d resolved scripts written to %s\n", len(names), dst)
	return nil
}
