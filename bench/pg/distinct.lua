-- wrk script for bench/pg: POST OCSP requests for distinct serials, so that every request
-- is a cache miss in revd (a PostgreSQL lookup and a signature).
--
-- $BENCH_PG_REQS names a file of fixed-length DER requests ($BENCH_PG_RECLEN octets each,
-- made by pgbench_revd.py); $BENCH_PG_THREADS is wrk's -t. Each wrk thread formats its own slice of the file once in
-- init() (the slices do not overlap), then sends them in order. A thread that reaches the
-- end of its slice starts again ("wraps": those requests would be cache hits; the driver
-- reports it). Every answer shorter than 16 octets (an unsigned error such as tryLater) is
-- counted as "bad".
local threads = {}
local counter = 0

function setup(thread)
   thread:set("tid", counter)
   counter = counter + 1
   table.insert(threads, thread)
end

reqs = {}
n = 0
i = 0
wraps = 0
bad = 0

function init(args)
   local path = assert(os.getenv("BENCH_PG_REQS"), "set BENCH_PG_REQS")
   local reclen = assert(tonumber(os.getenv("BENCH_PG_RECLEN")), "set BENCH_PG_RECLEN")
   local f = assert(io.open(path, "rb"))
   local data = f:read("*a")
   f:close()
   assert(#data % reclen == 0, "file length is not a multiple of BENCH_PG_RECLEN")
   local nthreads = assert(tonumber(os.getenv("BENCH_PG_THREADS")), "set BENCH_PG_THREADS")
   local total = #data / reclen
   local slice = math.floor(total / nthreads)
   assert(slice > 0 and tid < nthreads, "more threads than BENCH_PG_THREADS or requests")
   local first = tid * slice
   local headers = { ["Content-Type"] = "application/ocsp-request" }
   for k = 0, slice - 1 do
      local off = (first + k) * reclen
      reqs[k + 1] = wrk.format("POST", "/", headers, data:sub(off + 1, off + reclen))
   end
   n = slice
end

function request()
   i = i + 1
   if i > n then
      i = 1
      wraps = wraps + 1
   end
   return reqs[i]
end

function response(status, headers, body)
   if status ~= 200 or #body < 16 then
      bad = bad + 1
   end
end

function done(summary, latency, requests)
   for _, t in ipairs(threads) do
      io.write(string.format("bad answers: %d\nwraps: %d\n", t:get("bad"), t:get("wraps")))
   end
end
