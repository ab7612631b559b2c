-- Shared by the storm scripts (reply_all.lua, mixed_chain.lua), which load
-- it with dofile(dir .. "/storm.lua").
--
-- miltertest sets these globals from its -D name=value arguments:
--   dir     the directory of these scripts
--   milter  stormguard's milter socket, e.g. "inet:7357@127.0.0.1"
--   list    the registered list every message is sent to
--   root    the message id (without <>) of the storm's original
--
-- Each message gets its own milter connection and goes through it as
-- Postfix sends one: negotiation, connect, HELO, MAIL FROM, one RCPT TO
-- (the list, as the client gave it, before alias expansion), DATA, the
-- headers, end of headers. stormguard decides at end of headers; the
-- script checks that answer, aborts the transaction and disconnects.
--
-- miltertest reports only the milter reply code. stormguard refuses with
-- its own SMTP text ("550 5.7.1 ..."), which is SMFIR_REPLYCODE on the
-- wire: the 550 itself is checked by the Go test in the daemon's log.
--
-- Debian's miltertest prints no Lua error, not even a syntax error: a
-- failed script only exits 1. So a script runs its body through run(),
-- which prints "FAIL: <reason>" on standard output before failing.

-- run calls body and, if it fails, prints why and fails the script.
function run(body)
	local ok, err = pcall(body)
	if not ok then
		mt.echo("FAIL: " .. tostring(err))
		error(err, 0)
	end
end

run(function()
	for _, name in ipairs({ "dir", "milter", "list", "root" }) do
		if _G[name] == nil then
			error("missing -D " .. name .. "=...", 0)
		end
	end
end)

local codes = {
	[SMFIR_ACCEPT] = "accept",
	[SMFIR_CONTINUE] = "continue",
	[SMFIR_REJECT] = "reject",
	[SMFIR_TEMPFAIL] = "tempfail",
	[SMFIR_DISCARD] = "discard",
	[SMFIR_REPLYCODE] = "replycode",
}

-- replyName names a milter reply code for the output and error messages.
function replyName(code)
	if codes[code] ~= nil then
		return codes[code]
	end
	return string.format("code %d", math.tointeger(code) or -1)
end

-- miltertest's functions return nil on success and an error string on
-- failure: they do not raise, so every call is checked.
local function check(err, label, step)
	if err ~= nil then
		error(string.format("%s: %s: %s", label, step, tostring(err)), 0)
	end
end

-- miltertest copies a header into a 1,024-byte stack buffer without a
-- bound: a longer one crashes miltertest, not the milter. Refuse it here.
local maxHeader = 1024 - 2

-- send runs one message through stormguard and checks its answer at end
-- of headers. m.label names the message in the output ("reply 3 (iPhone
-- Mail)"), m.from is the envelope sender, m.headers a list of {name,
-- value} pairs in order, m.want the milter reply expected at end of headers.
function send(m)
	local conn = mt.connect(milter)
	if conn == nil then
		error(m.label .. ": mt.connect(" .. milter .. ") failed", 0)
	end
	check(mt.negotiate(conn, nil, nil, nil), m.label, "negotiate")
	check(mt.conninfo(conn, "client.example.org", "192.0.2.25"), m.label, "connect")
	check(mt.helo(conn, "client.example.org"), m.label, "HELO")
	check(mt.mailfrom(conn, "<" .. m.from .. ">"), m.label, "MAIL FROM")
	check(mt.rcptto(conn, "<" .. list .. ">"), m.label, "RCPT TO")
	check(mt.data(conn), m.label, "DATA")
	for _, h in ipairs(m.headers) do
		if #h[1] + #h[2] > maxHeader then
			error(string.format("%s: header %s is %d bytes, more than miltertest can send",
				m.label, h[1], #h[1] + #h[2]), 0)
		end
		check(mt.header(conn, h[1], h[2]), m.label, "header " .. h[1])
	end
	check(mt.eoh(conn), m.label, "end of headers")
	local got = mt.getreply(conn)
	mt.echo(string.format("%s: %s", m.label, replyName(got)))
	check(mt.abort(conn), m.label, "abort")
	check(mt.disconnect(conn), m.label, "disconnect")
	if got ~= m.want then
		error(string.format("%s: stormguard answered %s at end of headers, want %s",
			m.label, replyName(got), replyName(m.want)), 0)
	end
end

-- The answers stormguard gives at end of headers: accept (the milter's
-- part in the message ends there), or its own 550/451 reply.
ACCEPTED = SMFIR_ACCEPT
REFUSED = SMFIR_REPLYCODE

-- The default policy: max_replies 10 large-audience replies per thread in
-- a 1 h window. Replies 1 to 10 are let through, the 11th is refused.
MAX_REPLIES = 10
