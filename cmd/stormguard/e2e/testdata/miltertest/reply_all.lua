-- A reply-all storm as most clients write it: an original to the list,
-- then replies that each name the root in References and In-Reply-To.
-- Under the default policy replies 1 to 10 are let through and the 11th
-- is refused. Globals: see storm.lua.
dofile(dir .. "/storm.lua")

run(function()
	local subject = "Test message, please ignore"

	send({
		label = "original",
		from = "boss@example.org",
		headers = {
			{ "Message-ID", "<" .. root .. ">" },
			{ "Subject", subject },
			{ "From", "The Boss <boss@example.org>" },
			{ "To", "All staff <" .. list .. ">" },
		},
		want = ACCEPTED,
	})

	for i = 1, MAX_REPLIES + 1 do
		local want = ACCEPTED
		if i > MAX_REPLIES then
			want = REFUSED
		end
		send({
			label = string.format("reply %d", i),
			from = string.format("user%d@example.org", i),
			headers = {
				{ "Message-ID", string.format("<reply-%d-%s>", i, root) },
				{ "Subject", "RE: " .. subject },
				{ "From", string.format("User %d <user%d@example.org>", i, i) },
				{ "To", list .. ", boss@example.org" },
				{ "In-Reply-To", "<" .. root .. ">" },
				{ "References", "<" .. root .. ">" },
			},
			want = want,
		})
	end
end)
