-- wrk script for `cargo xtask bench api`: POST /jobs like post.lua until N answers were
-- 201 Created (`wrk -t1 ... -s fill.lua URL -- N`), to store a known number of jobs; then it
-- prints `fill: created N other M` and ends wrk at once (wrk's own stop would still wait for
-- the whole --duration). Run it with one thread: the count is per thread. Requests still in
-- flight at that moment may be stored too (at most one per connection).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"command": "-i missing.mp4 -c:v libx264 -preset ultrafast out.mp4"}'

local limit = 0
local created = 0
local other = 0

function init(args)
  limit = tonumber(args[1]) or 0
end

function response(status, headers, body)
  if status == 201 then
    created = created + 1
  else
    other = other + 1
  end
  if created >= limit then
    io.write(string.format("fill: created %d other %d\n", created, other))
    io.flush()
    os.exit(0)
  end
end
