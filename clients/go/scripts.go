package statefulroute

import (
	"embed"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

// The Lua scripts are the project's own (operator/stateful_route/store/lua), resolved by the
// include rule and copied here by `go generate`, because //go:embed cannot reach files outside
// the module. The copy is checked: scripts_test.go (and tests/unit/test_go_lua_copy.py on the
// Python side) fail when it differs from the canonical files.
//
//go:generate go run ./internal/luagen -src ../../operator/stateful_route/store/lua -dst lua

//go:embed lua/*.lua lua/scripts.sha1.json
var luaFiles embed.FS

// scriptSource returns the resolved text of the script <name>.lua.
func scriptSource(name string) string {
	data, err := luaFiles.ReadFile("lua/" + name + ".lua")
	if err != nil {
		panic(fmt.Sprintf("statefulroute: the embedded script %s is missing: %v", name, err))
	}
	return string(data)
}

// ScriptSHA1s returns the SHA1 of every script the client sends, by name (the names of
// lua/scripts.sha1.json): identical SHA1s mean the Go and Python clients send byte-identical
// scripts.
func ScriptSHA1s() map[string]string {
	data, err := luaFiles.ReadFile("lua/scripts.sha1.json")
	if err != nil {
		panic(err)
	}
	var sums map[string]string
	if err := json.Unmarshal(data, &sums); err != nil {
		panic(err)
	}
	return sums
}

// Every script, loaded once. go-redis's Script.Run sends EVALSHA and falls back to EVAL when
// Redis does not know the script (NOSCRIPT), as redis-py's registered scripts do.
var (
	scriptConfigure  = newScript("configure")
	scriptIfAbsent   = newScript("if_absent")
	scriptPlace      = newScript("place")
	scriptRead       = newScript("read")
	scriptSnapshot   = newScript("snapshot")
	scriptWriteTable = newScript("write_table")
	scriptPersistent = newScript("set_persistent")
)

func newScript(name string) *redis.Script {
	src := scriptSource(name)
	if !strings.HasSuffix(src, "\n") {
		panic("statefulroute: script " + name + " is not a resolved script")
	}
	return redis.NewScript(src)
}
