-- luacheck configuration for the Redis Lua scripts (operator/stateful_route/store/lua).
-- `make lint` checks the resolved scripts, byte for byte what Redis runs, written to a
-- temporary folder (see operator/stateful_route/store/lua/README.md, "Linting").

-- Redis runs scripts in Lua 5.1, with these libraries and tables as its only globals.
std = "lua51"
read_globals = {"redis", "KEYS", "ARGV", "cjson", "cmsgpack", "bit", "struct"}
max_line_length = 110

-- A script includes whole files of helpers and may not call every one of them: an unused
-- helper (a `local function name` or `local NAME =` at the start of a line of an include file)
-- is not a finding. Every other unused variable is.
ignore = {}
local include = "operator/stateful_route/store/lua/include/"
for _, file in ipairs({"base", "layout", "shards", "pods", "placement", "waiting"}) do
  for line in io.lines(include .. file .. ".lua") do
    local name = line:match("^local function ([%w_]+)") or line:match("^local ([%w_]+) =")
    if name then ignore[#ignore + 1] = "211/" .. name .. "$" end
  end
end
