-- Redis's `cjson` and `bit` libraries. `cjson` (lua-cjson 2.1.0 as Redis 7 builds it) in Lua 5.1: encode and decode
-- with its default settings, error texts and number format (`%.14g`). Tables are walked with
-- `next`, as lua-cjson walks them with `lua_next`, so an object's keys come out in the order
-- Redis's own Lua 5.1 gives. Errors are raised at the caller's level, as `luaL_error` from a C
-- function raises them ("user_script:1: ..."). Run once by the script VM's setup with the
-- `null` light userdata (a NULL pointer, lua-cjson's `cjson.null`) and the `bit` operations;
-- returns the two library tables.
local null, bit_ops = ...
local type, pairs, tostring, tonumber, error, pcall, select, format, char, sub, find, concat,
      floor, huge =
      type, pairs, tostring, tonumber, error, pcall, select, string.format, string.char,
      string.sub, string.find, table.concat, math.floor, math.huge

local MAX_DEPTH = 1000
local SPARSE_RATIO, SPARSE_SAFE = 2, 10

local escapes = { [8] = "\\b", [9] = "\\t", [10] = "\\n", [12] = "\\f", [13] = "\\r",
                  [34] = '\\"', [47] = "\\/", [92] = "\\\\", [127] = "\\u007f" }
for c = 0, 31 do
  if not escapes[c] then escapes[c] = format("\\u%04x", c) end
end
local escape_char = {}
for c, text in pairs(escapes) do escape_char[char(c)] = text end

local function encode_string(s)
  return '"' .. s:gsub('[%c"/\\\127]', escape_char) .. '"'
end

local function encode_number(n)
  if n ~= n or n == huge or n == -huge then
    error("Cannot serialise number: must not be NaN or Inf", 0)
  end
  return format("%.14g", n)
end

-- lua-cjson's `lua_array_length`: the largest key when every key is a positive integer, -1 when
-- the table is an object; an excessively sparse array is an error.
local function array_length(t)
  local max, items = 0, 0
  for k in pairs(t) do
    if type(k) ~= "number" or k < 1 or floor(k) ~= k then return -1 end
    if k > max then max = k end
    items = items + 1
  end
  if max > SPARSE_SAFE and max > items * SPARSE_RATIO then
    error("Cannot serialise table: excessively sparse array", 0)
  end
  return max
end

local encode_value

local function encode_table(t, depth, out)
  depth = depth + 1
  if depth > MAX_DEPTH then
    error(format("Cannot serialise, excessive nesting (%d)", depth), 0)
  end
  local len = array_length(t)
  if len > 0 then
    out[#out + 1] = "["
    for i = 1, len do
      if i > 1 then out[#out + 1] = "," end
      encode_value(t[i], depth, out)
    end
    out[#out + 1] = "]"
    return
  end
  out[#out + 1] = "{"
  local first = true
  for k, v in pairs(t) do
    if not first then out[#out + 1] = "," end
    first = false
    local kt = type(k)
    if kt == "string" then
      out[#out + 1] = encode_string(k)
    elseif kt == "number" then
      out[#out + 1] = '"' .. encode_number(k) .. '"'
    else
      error("Cannot serialise " .. kt .. ": table key must be a number or string", 0)
    end
    out[#out + 1] = ":"
    encode_value(v, depth, out)
  end
  out[#out + 1] = "}"
end

encode_value = function(v, depth, out)
  local t = type(v)
  if t == "string" then
    out[#out + 1] = encode_string(v)
  elseif t == "number" then
    out[#out + 1] = encode_number(v)
  elseif t == "boolean" then
    out[#out + 1] = v and "true" or "false"
  elseif t == "table" then
    encode_table(v, depth, out)
  elseif t == "nil" or v == null then
    out[#out + 1] = "null"
  else
    error("Cannot serialise " .. t .. ": type not supported", 0)
  end
end

local function encode(value)
  local out = {}
  encode_value(value, 0, out)
  return concat(out)
end

-- Decoding: a token at a time, with lua-cjson's token names and messages.
local function utf8(code)
  if code < 0x80 then return char(code) end
  if code < 0x800 then return char(0xC0 + floor(code / 0x40), 0x80 + code % 0x40) end
  if code < 0x10000 then
    return char(0xE0 + floor(code / 0x1000), 0x80 + floor(code / 0x40) % 0x40, 0x80 + code % 0x40)
  end
  return char(0xF0 + floor(code / 0x40000), 0x80 + floor(code / 0x1000) % 0x40,
              0x80 + floor(code / 0x40) % 0x40, 0x80 + code % 0x40)
end

local literals = { ["true"] = true, ["false"] = false, null = null }

local simple_escapes = { ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f", n = "\n",
                         r = "\r", t = "\t" }

-- A token at `pos`: its type name, its value and the position after it. Errors are the
-- T_ERROR token, whose name is the error's text.
local function next_token(s, pos)
  pos = find(s, "[^ \t\n\r]", pos) or #s + 1
  local c = sub(s, pos, pos)
  if c == "" then return "T_END", nil, pos, pos end
  if c == "{" then return "T_OBJ_BEGIN", nil, pos, pos + 1 end
  if c == "}" then return "T_OBJ_END", nil, pos, pos + 1 end
  if c == "[" then return "T_ARR_BEGIN", nil, pos, pos + 1 end
  if c == "]" then return "T_ARR_END", nil, pos, pos + 1 end
  if c == ":" then return "T_COLON", nil, pos, pos + 1 end
  if c == "," then return "T_COMMA", nil, pos, pos + 1 end
  if c == '"' then
    local parts, i = {}, pos + 1
    while true do
      local j = find(s, '["\\]', i)
      if not j then return "unexpected end of string", nil, #s + 1, #s + 1 end
      parts[#parts + 1] = sub(s, i, j - 1)
      if sub(s, j, j) == '"' then return "T_STRING", concat(parts), pos, j + 1 end
      local e = sub(s, j + 1, j + 1)
      if simple_escapes[e] then
        parts[#parts + 1] = simple_escapes[e]
        i = j + 2
      elseif e == "u" then
        local hex = sub(s, j + 2, j + 5)
        local code = #hex == 4 and find(hex, "^%x%x%x%x$") and tonumber(hex, 16)
        if not code then return "invalid unicode escape code", nil, j, j end
        i = j + 6
        if code >= 0xD800 and code <= 0xDBFF then
          local low = sub(s, i, i + 1) == "\\u" and sub(s, i + 2, i + 5)
          low = low and find(low, "^%x%x%x%x$") and tonumber(low, 16)
          if not low or low < 0xDC00 or low > 0xDFFF then
            return "invalid unicode escape code", nil, j, j
          end
          code = 0x10000 + (code - 0xD800) * 0x400 + (low - 0xDC00)
          i = i + 6
        elseif code >= 0xDC00 and code <= 0xDFFF then
          return "invalid unicode escape code", nil, j, j
        end
        parts[#parts + 1] = utf8(code)
      else
        return "invalid escape code", nil, j, j
      end
    end
  end
  for word, value in pairs(literals) do
    if sub(s, pos, pos + #word - 1) == word then
      return word == "null" and "T_NULL" or "T_BOOLEAN", value, pos, pos + #word
    end
  end
  if find(c, "[%-%d]") or find(c, "[iInN]") then
    -- strtod's reach: a sign, hex or decimal digits, a point, an exponent; or inf and nan.
    local text = s:match("^%-?0[xX]%x+", pos) or s:match("^%-?%d*%.?%d*[eE][%+%-]?%d+", pos)
                 or s:match("^%-?%d*%.?%d*", pos)
    if c == "i" or c == "I" or c == "n" or c == "N" or text == "-" then
      local word = s:match("^%-?[iI][nN][fF]", pos) or s:match("^%-?[nN][aA][nN]", pos)
      if word then
        local value = find(word, "[nN][aA]") and 0 / 0 or (sub(word, 1, 1) == "-" and -huge or huge)
        return "T_NUMBER", value, pos, pos + #word
      end
    end
    local value = text and tonumber(text)
    if value then return "T_NUMBER", value, pos, pos + #text end
    return "invalid number", nil, pos, pos
  end
  return "invalid token", nil, pos, pos
end

local function expected(what, token, at)
  error(format("Expected %s but found %s at character %d", what, token, at), 0)
end

local decode_value

local function decode_object(s, pos, depth, at)
  if depth > MAX_DEPTH then
    error(format("Found too many nested data structures (%d) at character %d", depth, at), 0)
  end
  local object = {}
  local token, value, start
  token, value, start, pos = next_token(s, pos)
  if token == "T_OBJ_END" then return object, pos end
  while true do
    if token ~= "T_STRING" then expected("object key string", token, start) end
    local key = value
    token, value, start, pos = next_token(s, pos)
    if token ~= "T_COLON" then expected("colon", token, start) end
    object[key], pos = decode_value(s, pos, depth)
    token, value, start, pos = next_token(s, pos)
    if token == "T_OBJ_END" then return object, pos end
    if token ~= "T_COMMA" then expected("comma or object end", token, start) end
    token, value, start, pos = next_token(s, pos)
  end
end

local function decode_array(s, pos, depth, at)
  if depth > MAX_DEPTH then
    error(format("Found too many nested data structures (%d) at character %d", depth, at), 0)
  end
  local array, n = {}, 0
  local token, value, start, after = next_token(s, pos)
  if token == "T_ARR_END" then return array, after end
  while true do
    n = n + 1
    array[n], pos = decode_value(s, pos, depth)
    token, value, start, pos = next_token(s, pos)
    if token == "T_ARR_END" then return array, pos end
    if token ~= "T_COMMA" then expected("comma or array end", token, start) end
  end
end

decode_value = function(s, pos, depth)
  local token, value, start, after = next_token(s, pos)
  if token == "T_OBJ_BEGIN" then return decode_object(s, after, depth + 1, start) end
  if token == "T_ARR_BEGIN" then return decode_array(s, after, depth + 1, start) end
  if token == "T_STRING" or token == "T_NUMBER" or token == "T_BOOLEAN" or token == "T_NULL" then
    return value, after
  end
  expected("value", token, start)
end

local function decode(text)
  if type(text) ~= "string" then text = tostring(text) end
  local value, pos = decode_value(text, 1, 0)
  local token, _, start = next_token(text, pos)
  if token ~= "T_END" then expected("the end", token, start) end
  return value
end

-- The library's functions raise their errors at the caller's line, as luaL_error does.
local function at_caller(f, name)
  return function(...)
    local n = select("#", ...)
    if n ~= 1 then error("bad argument #1 to '" .. name .. "' (expected 1 argument)", 2) end
    local ok, result = pcall(f, ...)
    if not ok then error(result, 2) end
    return result
  end
end

-- Redis's `bit` library (LuaBitOp): the arguments checked here, as luaL_checknumber checks
-- them, the 32-bit work done by `ops` (Rust).
local function bit_library(ops)
  local function number(name, i, n, ...)
    local v = select(i, ...)
    local x = tonumber(v)
    if x == nil then
      local got = i > n and "no value" or type(v)
      error(format("bad argument #%d to '%s' (number expected, got %s)", i, name, got), 3)
    end
    return x
  end
  local bit = {}
  for _, name in pairs({ "tobit", "bnot", "bswap" }) do
    local op = ops[name]
    bit[name] = function(...) return op(number(name, 1, select("#", ...), ...)) end
  end
  for _, name in pairs({ "lshift", "rshift", "arshift", "rol", "ror" }) do
    local op = ops[name]
    bit[name] = function(...)
      local n = select("#", ...)
      return op(number(name, 1, n, ...), number(name, 2, n, ...))
    end
  end
  for _, name in pairs({ "band", "bor", "bxor" }) do
    local op = ops[name]
    bit[name] = function(...)
      local n = select("#", ...)
      local acc = op(number(name, 1, n, ...), 0, true)
      for i = 2, n do acc = op(acc, number(name, i, n, ...)) end
      return acc
    end
  end
  local tohex = ops.tohex
  bit.tohex = function(...)
    local n = select("#", ...)
    local x = number("tohex", 1, n, ...)
    if n >= 2 then return tohex(x, number("tohex", 2, n, ...)) end
    return tohex(x, 8)
  end
  return bit
end

return {
  encode = at_caller(encode, "encode"),
  decode = at_caller(decode, "decode"),
  null = null,
  _NAME = "cjson",
  _VERSION = "2.1.0",
}, bit_library(bit_ops)
