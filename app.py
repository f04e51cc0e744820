"""Start ThinkRec Explorer: ``python app.py`` (binds 127.0.0.1, or 0.0.0.0 on a Hugging Face Space)."""

import logging
import os

from demo import build_demo
from demo.app import CSS, STALE_GUARD_JS
from thinkrec.config import load_config
from thinkrec.explorer import Explorer

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    on_space = bool(os.environ.get("SPACE_ID"))
    demo = build_demo(Explorer.load(load_config(os.environ.get("THINKREC_CONFIG"))))
    demo.queue(max_size=32, default_concurrency_limit=2)
    demo.launch(server_name="0.0.0.0" if on_space else "127.0.0.1", server_port=int(os.environ.get("PORT", "7860")),
                css=CSS, js=STALE_GUARD_JS, share=False,
                show_error=False)  # no public link; errors never show a traceback
