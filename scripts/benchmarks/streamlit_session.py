"""A scripted Streamlit session: the browser's side of the protocol, without a browser.

Speaks to a running Streamlit server over its websocket (``/_stcore/stream``) as the web client
does: a ``BackMsg.rerun_script`` with the page and the widget states, then the server's
``ForwardMsg`` deltas until the script run finishes. Widgets are found by their label in the
elements the run drew, so a benchmark can answer a radio and press a button as a student would.
Used by ``benchmark_quiz_class.py --client protocol``: many sessions cost the machine only the
server's work (no page rendering), as in a class where each student has their own computer.
"""

from __future__ import annotations

import time

from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.proto.WidgetStates_pb2 import WidgetState

WIDGET_TYPES = ("button", "radio", "number_input", "selectbox", "checkbox", "text_input")


class ScriptError(RuntimeError):
    """The page raised (an exception element) or the script did not compile."""


class ScriptedSession:
    """One browser tab's worth of Streamlit session, driven from a script."""

    def __init__(self, url: str, page: str):
        self.url = url.replace("http://", "ws://").rstrip("/") + "/_stcore/stream"
        self.page = page
        self.elements: list = []  # the elements the last run drew
        self.socket = None

    async def __aenter__(self) -> "ScriptedSession":
        import websockets

        self.socket = await websockets.connect(self.url, subprotocols=["streamlit"],
                                               max_size=None, open_timeout=60,
                                               ping_interval=None)  # a busy server is slow to pong
        return self

    async def __aexit__(self, *exc) -> None:
        await self.socket.close()

    def widget(self, kind: str, label: str):
        """The last drawn widget of ``kind`` (``"button"``, ``"radio"``...) with ``label``."""
        for element in reversed(self.elements):
            if element.WhichOneof("type") == kind and getattr(element, kind).label == label:
                return getattr(element, kind)
        raise LookupError(f"no {kind} labelled {label!r} on the page; it shows: "
                          + "; ".join(self.texts()[:12]))

    def texts(self) -> list[str]:
        """The text of the markdown, alerts and headings the last run drew."""
        out = []
        for element in self.elements:
            kind = element.WhichOneof("type")
            if kind in ("markdown", "alert", "heading"):
                out.append(getattr(element, kind).body)
        return out

    async def run(self, widgets: list[WidgetState] = (), until: str | None = None
                  ) -> tuple[float, float]:
        """Ask for a run with ``widgets`` (clicks and values); wait until it finishes.

        Returns (seconds until an element holding ``until`` arrived, or the run's end when
        ``until`` is ``None``; seconds until the run finished successfully). A run that ends
        early for a rerun (``st.rerun``) is followed into the next one.
        """
        message = BackMsg()
        message.rerun_script.page_name = self.page
        message.rerun_script.query_string = ""
        message.rerun_script.widget_states.widgets.extend(widgets)
        started = time.perf_counter()
        await self.socket.send(message.SerializeToString())
        self.elements, seen = [], None
        while True:
            incoming = ForwardMsg()
            incoming.ParseFromString(await self.socket.recv())
            kind = incoming.WhichOneof("type")
            if kind == "delta" and incoming.delta.WhichOneof("type") == "new_element":
                element = incoming.delta.new_element
                self.elements.append(element)
                if element.WhichOneof("type") == "exception":
                    raise ScriptError(element.exception.message)
                if until and seen is None and until in str(element):
                    seen = time.perf_counter() - started
            elif kind == "script_finished":
                status = incoming.script_finished
                if status == ForwardMsg.FINISHED_WITH_COMPILE_ERROR:
                    raise ScriptError("the page did not compile")
                if status == ForwardMsg.FINISHED_EARLY_FOR_RERUN:
                    self.elements = []  # st.rerun: the next run redraws the page
                    continue
                finished = time.perf_counter() - started
                if until and seen is None:
                    raise LookupError(f"the run finished without {until!r}; it shows: "
                                      + "; ".join(self.texts()[:12]))
                return (seen if until else finished), finished


def click(button) -> WidgetState:
    state = WidgetState(id=button.id)
    state.trigger_value = True
    return state


def choose(widget, option: str) -> WidgetState:
    """A radio or select box set to ``option`` (its displayed text)."""
    if option not in widget.options:
        raise LookupError(f"{widget.label!r} has no option {option!r}: {list(widget.options)}")
    state = WidgetState(id=widget.id)
    state.string_value = option  # Streamlit 1.67 sends the formatted option of both
    return state


def number(widget, value: int) -> WidgetState:
    state = WidgetState(id=widget.id)
    state.int_value = int(value)
    return state
