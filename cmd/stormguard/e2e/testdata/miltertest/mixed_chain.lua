-- The same storm as reply_all.lua, written as a chain: each reply answers
-- the reply before it, and each is written as a different real client
-- writes its threading headers (checked on public list archives):
--
--   Gmail, Thunderbird  References = the parent's References + the
--                       parent's id; In-Reply-To = the parent's id
--   iPhone Mail         In-Reply-To = References = the parent's id only
--   RainLoop            References newest first (parent ... root)
--   Outlook             no References: In-Reply-To and Thread-Index (the
--                       conversation's GUID, 5 more bytes per reply)
--   Mailman web form    In-Reply-To without angle brackets, no References
--
-- From the 3rd reply on no header names the root: only the chain of
-- replies leads back to it (and, for the Outlook reply, the Thread-Index
-- GUID it shares with the original). All eleven replies are one thread:
-- replies 1 to 10 are let through and the 11th is refused. Globals: see
-- storm.lua.
dofile(dir .. "/storm.lua")

run(function()
	local subject = "Test message, please ignore"

	-- ids writes message ids the way References and In-Reply-To carry them.
	local function ids(...)
		local out = {}
		for i, id in ipairs({ ... }) do
			out[i] = "<" .. id .. ">"
		end
		return table.concat(out, " ")
	end

	-- Outlook's Thread-Index for the conversation: base64 of 0x01, a 5-byte
	-- FILETIME and the 16-byte conversation GUID 10 11 ... 1f (22 bytes);
	-- the reply below appends six 5-byte child blocks (52 bytes).
	local threadIndexRoot = "AQHZobLDEBESExQVFhcYGRobHB0eHw=="
	local threadIndexReply6 = "AQHZobLDEBESExQVFhcYGRobHB0eHwAAABorAAAAGisAAAAaKwAAABorAAAAGisAAAAaKw=="

	local r = {
		"CAF1reply1@mail.gmail.com",            -- 1 Gmail
		"reply2-8c1f@thunderbird.example.org",  -- 2 Thunderbird
		"REPLY3-4A2E@icloud.example.com",       -- 3 iPhone Mail
		"CAF4reply4@mail.gmail.com",            -- 4 Gmail
		"reply5.rainloop@webmail.example.org",  -- 5 RainLoop
		"AM0PR06MB6reply6@outlook.example.com", -- 6 Outlook
		"reply7.mailman@lists.example.org",     -- 7 Mailman web form
		"CAF8reply8@mail.gmail.com",            -- 8 Gmail
		"REPLY9-77B0@icloud.example.com",       -- 9 iPhone Mail
		"reply10-5d3a@thunderbird.example.org", -- 10 Thunderbird
		"reply11.rainloop@webmail.example.org", -- 11 RainLoop
	}

	-- Each reply: its client and its threading headers, answering the one
	-- before it.
	local chain = {
		{ "Gmail", "Re: ", { { "In-Reply-To", ids(root) }, { "References", ids(root) } } },
		{ "Thunderbird", "Re: ", { { "In-Reply-To", ids(r[1]) }, { "References", ids(root, r[1]) } } },
		{ "iPhone Mail", "Re: ", { { "In-Reply-To", ids(r[2]) }, { "References", ids(r[2]) } } },
		{ "Gmail", "Re: ", { { "In-Reply-To", ids(r[3]) }, { "References", ids(r[2], r[3]) } } },
		{ "RainLoop", "Re: ", { { "In-Reply-To", ids(r[4]) }, { "References", ids(r[4], r[3], r[2]) } } },
		{ "Outlook", "RE: ", {
			{ "In-Reply-To", ids(r[5]) },
			{ "Thread-Topic", subject },
			{ "Thread-Index", threadIndexReply6 },
		} },
		{ "Mailman web form", "Re: ", { { "In-Reply-To", r[6] } } },
		-- The parent had no References but a one-id In-Reply-To: RFC 5322
		-- makes References that id plus the parent's, so its first id is
		-- the grandparent, itself a reply.
		{ "Gmail", "Re: ", { { "In-Reply-To", ids(r[7]) }, { "References", ids(r[6], r[7]) } } },
		{ "iPhone Mail", "Re: ", { { "In-Reply-To", ids(r[8]) }, { "References", ids(r[8]) } } },
		{ "Thunderbird", "Re: ", { { "In-Reply-To", ids(r[9]) }, { "References", ids(r[8], r[9]) } } },
		{ "RainLoop", "Re: ", { { "In-Reply-To", ids(r[10]) }, { "References", ids(r[10], r[9], r[8]) } } },
	}
	assert(#chain == MAX_REPLIES + 1 and #r == #chain)

	-- The original, sent from Outlook.
	send({
		label = "original",
		from = "boss@example.org",
		headers = {
			{ "Message-ID", ids(root) },
			{ "Subject", subject },
			{ "From", "The Boss <boss@example.org>" },
			{ "To", "All staff <" .. list .. ">" },
			{ "Thread-Topic", subject },
			{ "Thread-Index", threadIndexRoot },
		},
		want = ACCEPTED,
	})

	for i, c in ipairs(chain) do
		local client, prefix, threading = c[1], c[2], c[3]
		local from = string.format("user%d@example.org", i)
		local headers = {
			{ "Message-ID", ids(r[i]) },
			{ "Subject", prefix .. subject },
			{ "From", string.format("User %d <%s>", i, from) },
			{ "To", list .. ", boss@example.org" },
		}
		for _, h in ipairs(threading) do
			headers[#headers + 1] = h
		end
		local want = ACCEPTED
		if i > MAX_REPLIES then
			want = REFUSED
		end
		send({
			label = string.format("reply %d (%s)", i, client),
			from = from,
			headers = headers,
			want = want,
		})
	end
end)
