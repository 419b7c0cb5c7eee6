"""Start the dashboard with its default model already loaded: ``python serve.py [options]``.

The same as ``streamlit run dashboard.py [options]`` (any Streamlit option, e.g.
``--server.port 8502``), plus a thread that loads the default model, compiles its inference and
computes the first case while the server starts (``app.warm_up``), so the first
visitor does not wait for TensorFlow, the weights and the first heatmap.
"""

import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent


def _warm_up() -> None:
    import logging

    from app import warm_up

    # The warm-up runs outside any page's script run, on purpose: Streamlit's warning that
    # this thread has no ScriptRunContext says nothing useful here.
    logging.getLogger("streamlit.runtime.scriptrunner_utils.script_run_context").setLevel(
        logging.ERROR)

    warm_up.run(log=lambda line: print(line, file=sys.stderr, flush=True))


def main() -> int:
    from streamlit.web import cli

    sys.path.insert(0, str(ROOT))
    threading.Thread(target=_warm_up, name="warm-up", daemon=True).start()
    sys.argv = ["streamlit", "run", str(ROOT / "dashboard.py"), *sys.argv[1:]]
    return cli.main()


if __name__ == "__main__":
    sys.exit(main())
