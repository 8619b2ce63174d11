"""The baseline: a bare FastAPI + uvicorn app answering the same request in-process.

    python echo_app.py PORT
"""

import json
import sys

import uvicorn
from fastapi import FastAPI, Request, Response

app = FastAPI()


@app.post("/v1/flexible/infers")
async def infer(request: Request) -> Response:
    body = json.loads(await request.body())
    return Response(content=json.dumps({"echo": body["args"][0]}), media_type="application/json")


@app.get("/status")
async def status() -> dict:
    return {"status": "ok"}


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), loop="uvloop", http="httptools",
                log_level="warning", access_log=False)
