-- wrk script for bench/redis: POST each of a file of pre-built OCSP requests exactly
-- once, then stop. Used to fill revd's L1 with N distinct answers (and to time that).
--
-- The file and its record length come as in bench/pg/distinct.lua ($BENCH_PG_REQS,
-- $BENCH_PG_RECLEN, $BENCH_PG_THREADS = wrk's -t): each wrk thread formats its own slice
-- once in init(). A thread that has had an answer for every request of its slice writes
-- the file $BENCH_DONE_DIR/<thread id> and stops its event loop; the driver sends wrk
-- SIGINT once every thread has written its file (wrk then prints its summary), so the run
-- takes as long as the pass, bounded by wrk's -d. Until a thread stops, connections that
-- finish early send its first requests again ("extra", counted: those are L1 hits).
-- Answers that are not 200 or shorter than 16 octets are counted as "bad".
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
got = 0
bad = 0
extra = 0
finished = false

function init(args)
   local path = assert(os.getenv("BENCH_PG_REQS"), "set BENCH_PG_REQS")
   local reclen = assert(tonumber(os.getenv("BENCH_PG_RECLEN")), "set BENCH_PG_RECLEN")
   local nthreads = assert(tonumber(os.getenv("BENCH_PG_THREADS")), "set BENCH_PG_THREADS")
   local f = assert(io.open(path, "rb"))
   local data = f:read("*a")
   f:close()
   assert(#data % reclen == 0, "file length is not a multiple of BENCH_PG_RECLEN")
   local total = #data / reclen
   local slice = math.floor(total / nthreads)
   local first = tid * slice
   if tid == nthreads - 1 then
      slice = total - first -- the last thread also takes the remainder
   end
   assert(slice > 0 and tid < nthreads, "more threads than BENCH_PG_THREADS or requests")
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
   end
   return reqs[i]
end

function response(status, headers, body)
   if status ~= 200 or #body < 16 then
      bad = bad + 1
   end
   got = got + 1
   if got > n then
      extra = extra + 1
   end
   if got >= n and not finished then
      finished = true
      local dir = os.getenv("BENCH_DONE_DIR")
      if dir then
         local f = io.open(dir .. "/" .. tid, "w")
         if f then
            f:write(string.format("%d %d\n", got, bad))
            f:close()
         end
      end
      wrk.thread:stop()
   end
end

function done(summary, latency, requests)
   for _, t in ipairs(threads) do
      io.write(string.format("slice: %d\nanswers: %d\nbad answers: %d\nextra: %d\n",
                             t:get("n"), t:get("got"), t:get("bad"), t:get("extra")))
   end
end
