"""The official openai client against the gateway, run on the lab's controller host.

argv: BASE_URL API_KEY MODE [KILL_CMD...]; prints one JSON line.
MODE: reference | stream | chat | models | badkey
"""

import json
import subprocess
import sys

from openai import OpenAI

base, key, mode = sys.argv[1:4]
client = OpenAI(base_url=base, api_key=key, max_retries=0, timeout=60)
prompt = "the hive answers"
out: dict = {}
if mode == "reference":
    r = client.completions.create(model="tiny-test", prompt=prompt, max_tokens=48,
                                  temperature=0)
    out = {"text": r.choices[0].text}
elif mode == "stream":
    parts, killed = [], False
    for chunk in client.completions.create(model="tiny-test", prompt=prompt, max_tokens=48,
                                           temperature=0, stream=True):
        parts.append(chunk.choices[0].text)
        if not killed and len(parts) == 3 and len(sys.argv) > 4:
            subprocess.run(sys.argv[4:], check=False)  # a node vanishes mid-stream
            killed = True
    out = {"text": "".join(parts)}
elif mode == "chat":
    r = client.chat.completions.create(model="tiny-test", max_tokens=8, temperature=0,
                                       messages=[{"role": "user", "content": "hello"}])
    out = {"text": r.choices[0].message.content, "finish": r.choices[0].finish_reason}
elif mode == "models":
    out = {"models": [m.id for m in client.models.list()]}
elif mode == "badkey":
    try:
        client.models.list()
        out = {"error": None}
    except Exception as exc:
        out = {"error": type(exc).__name__}
print(json.dumps(out))
