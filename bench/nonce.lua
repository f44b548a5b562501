-- wrk script: POST OCSP requests that each carry their own nonce, so that revd started
-- with `--nonce sign` has to sign every answer live.
--
-- $BENCH_NONCE_REQS names a file of N pre-built DER requests of equal length (made by
-- `ocspbench.py nonce-reqs`: the same CertID, nonces 0..N-1 plus a per-run salt). Each
-- wrk thread formats all N HTTP requests once in init() and then cycles through them,
-- starting at its own offset, so request() costs one table lookup. With N = 20000 a nonce
-- repeats only after N requests per thread; revd never caches nonce'd answers, so every
-- request is signed regardless (run.sh checks the nonce is echoed before measuring).
local counter = 0

function setup(thread)
   thread:set("tid", counter)
   counter = counter + 1
end

local reqs = {}
local n = 0
local i = 0

local function der_length(s)
   -- total length of the DER TLV at the start of s (SEQUENCE, short or long form)
   local l0 = s:byte(2)
   if l0 < 0x80 then return 2 + l0 end
   local k = l0 - 0x80
   local len = 0
   for j = 1, k do len = len * 256 + s:byte(2 + j) end
   return 2 + k + len
end

function init(args)
   local path = os.getenv("BENCH_NONCE_REQS")
   assert(path, "set BENCH_NONCE_REQS to the file made by ocspbench.py nonce-reqs")
   local f = assert(io.open(path, "rb"))
   local data = f:read("*a")
   f:close()
   local reclen = der_length(data)
   assert(#data % reclen == 0, "record file length is not a multiple of the record length")
   n = #data / reclen
   local headers = { ["Content-Type"] = "application/ocsp-request" }
   for k = 0, n - 1 do
      local body = data:sub(k * reclen + 1, (k + 1) * reclen)
      reqs[k + 1] = wrk.format("POST", "/", headers, body)
   end
   -- spread the threads over the list so that they do not send the same nonces together
   i = math.floor(((tid or 0) * n) / 8) % n
end

function request()
   i = i + 1
   if i > n then i = 1 end
   return reqs[i]
end
