-- Replays pre-signed Ecwid webhooks, one line each: path <TAB> signature <TAB> body.
-- Every request is built once in init(); request() only hands the next one out.
-- done() prints one JSON line that bench/load.py reads.
local requests = {}
local count = 0
local next_index = 0

function init(args)
  for line in io.lines(args[1]) do
    local path, signature, body = line:match("^([^\t]*)\t([^\t]*)\t(.*)$")
    count = count + 1
    requests[count] = wrk.format("POST", path, {
      ["Content-Type"] = "application/json",
      ["X-Ecwid-Webhook-Signature"] = signature,
    }, body)
  end
end

function request()
  next_index = next_index % count + 1
  return requests[next_index]
end

function done(summary, latency, _)
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "status_errors": %d, "socket_errors": %d, "timeouts": %d, ' ..
    '"p50_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write, summary.errors.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
