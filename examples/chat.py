"""Talk to loraloop's chat gateway with the official ``openai`` client, as a chatbot would.

One conversation of two exchanges (the second one a complaint) and a thumbs-down on the
last reply, all through the gateway of a running ``loraloop up``: the only change a
chatbot makes is the client's base URL. The gateway routes the user to a version,
answers with it and publishes both turns of each exchange, so capture sees the
conversation; the complaint flags it and it shows up in the review console's queue.

    python examples/chat.py --data-dir .loraloop

The gateway's address comes from ``<data-dir>/stack.json`` (``gateway_url``) and its key
from ``<data-dir>/gateway.key``, both written by ``loraloop up``.
"""

from __future__ import annotations

import argparse
import json
import secrets
import string
import sys
from pathlib import Path
from typing import Any

import httpx
import openai

QUESTION = "Can I still cancel the data science course I bought last week?"
COMPLAINT = "That does not answer it. I want my money back or I file a complaint."


def main() -> int:
    """Sends the conversation and the feedback; prints where to find it in the console."""
    parser = argparse.ArgumentParser(description="Chat with loraloop's gateway.")
    parser.add_argument("--data-dir", type=Path, default=Path(".loraloop"))
    parser.add_argument("--user", default="readme-user", help="the end user's id")
    args = parser.parse_args()
    stack_file = args.data_dir / "stack.json"
    if not stack_file.exists():
        print(f"no {stack_file}: start the stack first (loraloop up --data-dir {args.data_dir})")
        return 1
    stack = json.loads(stack_file.read_text(encoding="utf-8"))
    if not stack.get("gateway_url"):
        print(f"{stack_file} names no gateway_url: the stack runs without its gateway")
        return 1
    key = (args.data_dir / "gateway.key").read_text(encoding="utf-8").strip()
    client = openai.OpenAI(base_url=stack["gateway_url"], api_key=key)
    # letters only: a run of digits could read as a phone number and be masked in the console
    conversation = "readme-" + "".join(secrets.choice(string.ascii_lowercase) for _ in range(10))

    messages: list[Any] = []
    for text in (QUESTION, COMPLAINT):
        messages.append({"role": "user", "content": text})
        raw = client.chat.completions.with_raw_response.create(
            model="loraloop",  # the alias: the router picks the version
            messages=messages,
            user=args.user,  # routing is sticky per end user
            metadata={"conversation_id": conversation},
        )
        reply = raw.parse()
        answer = reply.choices[0].message.content or ""
        messages.append({"role": "assistant", "content": answer})
        print(f"user: {text}\n{reply.model}: {answer}\n")

    feedback = httpx.post(
        stack["gateway_url"] + "/feedback",
        headers={"Authorization": f"Bearer {key}"},
        json={
            "conversation_id": conversation,
            "user_id": args.user,
            "turn_index": int(raw.headers["X-Loraloop-Turn-Index"]),
            "kind": "thumbs_down",
            "comment": "did not answer the question",
        },
        timeout=30,
    )
    feedback.raise_for_status()
    print(f"conversation {conversation}: 4 turns and a thumbs-down published")
    print(f"review console: {stack['console_url']}/samples/smp-{conversation}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
