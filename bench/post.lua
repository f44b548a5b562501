-- wrk script: POST one OCSP request (DER) on every request, keep-alive.
-- The body is read from the file named by $BENCH_REQ_DER at start-up; with no request()
-- function wrk builds the HTTP request once and reuses it, so the client stays cheap.
local path = os.getenv("BENCH_REQ_DER")
assert(path, "set BENCH_REQ_DER to the DER request file")
local f = assert(io.open(path, "rb"))
local body = f:read("*a")
f:close()

wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/ocsp-request"
