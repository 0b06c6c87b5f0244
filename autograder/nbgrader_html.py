"""Safe HTML for the instructor: nbgrader's feedback and the formgrader's notebook view.

Both pages are built with nbconvert's HTMLExporter from the autograded notebook, which holds
what the student wrote (markdown answers, raw cells, added cells) and what their notebook printed
in the sandbox. nbgrader's own templates render markdown with `markdown2html` and nothing else,
even with `HTMLExporter.sanitize_html` set, so a markdown answer with `<script>`, `onerror=` or a
`[link](javascript:...)` ran in the instructor's browser, on the Jupyter server that serves the
formgrader (and in the student's feedback). The course's `nbgrader_config.py` therefore:

- sets `HTMLExporter.sanitize_html` (nbconvert's own cleaning of HTML and Markdown outputs, no
  JavaScript outputs);
- replaces the `markdown2html` filter of every HTMLExporter template by `safe_markdown2html`:
  nbconvert's rendering, then bleach with an allowlist of tags and attributes (no `on*`, no
  `style`, no `id`), links to http(s) and mailto only, images from http(s) or inline PNG, JPEG
  or GIF; MathJax commands that make links or set ids and styles (`\\href`, `\\url`, `\\cssId`,
  `\\class`, `\\style`, `\\require`) are shown as text;
- adds `SafeNotebook` to `HTMLExporter.preprocessors`: code outputs keep only text and PNG/JPEG
  images (`safe_outputs`, also what autograde keeps of the sandbox's notebook), raw cells are
  shown as escaped text, the notebook's metadata keeps only its kernel and language.

Light (nbconvert and bleach only): the formgrader imports it.
"""
from __future__ import annotations

import html
import re

import bleach
from jinja2 import pass_context
from nbconvert.filters.markdown_mistune import IPythonRenderer, MarkdownWithMath
from nbconvert.preprocessors import Preprocessor
from nbformat import NotebookNode, v4
from traitlets import Bool

TAGS = frozenset({
    "a", "abbr", "b", "blockquote", "br", "caption", "code", "dd", "del", "details", "div", "dl", "dt", "em",
    "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "kbd", "li", "ol", "p", "pre", "s", "span", "strong",
    "sub", "summary", "sup", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "ul",
})
ATTRIBUTES = {"a": {"href", "title"}, "img": {"src", "alt", "title", "width", "height"}, "*": {"class"}}
PROTOCOLS = frozenset({"http", "https", "mailto", "data"})  # data: for inline images only (see _allowed)
INLINE_IMAGE = re.compile(r"data:image/(png|jpeg|gif);base64,[A-Za-z0-9+/=\s]*", re.IGNORECASE)
MATHJAX_ACTIVE = re.compile(r"\\(href|url|cssId|class|style|require)(?![A-Za-z])")
# What an output may carry: text and raster images. No HTML, Markdown, LaTeX, SVG or JavaScript.
SAFE_DATA = ("text/plain", "image/png", "image/jpeg")
BASE64 = re.compile(r"[A-Za-z0-9+/=\s]*")
SAFE_IMAGE_METADATA = ("width", "height")
NOTEBOOK_METADATA = ("kernelspec", "language_info")  # each a flat dict of plain words (PLAIN_WORDS)
PLAIN_WORDS = re.compile(r"[^<>\"'&`\\]{0,200}")


def _allowed(tag: str, name: str, value: str) -> bool:
    if name not in ATTRIBUTES.get(tag, set()) | ATTRIBUTES["*"]:
        return False
    if value.strip().lower().startswith("data:"):
        return tag == "img" and name == "src" and INLINE_IMAGE.fullmatch(value.strip()) is not None
    return True


def clean(fragment: str) -> str:
    """`fragment` (HTML) with nothing that runs: bleach with this module's allowlists."""
    cleaned = bleach.clean(fragment, tags=TAGS, attributes=_allowed, protocols=PROTOCOLS, strip=False,
                           strip_comments=True)
    return MATHJAX_ACTIVE.sub(lambda m: r"\text{\%s}" % m.group(1), cleaned)


@pass_context
def safe_markdown2html(context, source: str) -> str:
    """The `markdown2html` filter of nbconvert's HTMLExporter (attachments, math), then `clean`."""
    cell = context.get("cell", {})
    path = context.get("resources", {}).get("metadata", {}).get("path", "")
    renderer = IPythonRenderer(escape=False, allow_harmful_protocols=False,
                               attachments=cell.get("attachments", {}), path=path)
    return clean(MarkdownWithMath(renderer=renderer).render(source))


def safe_outputs(outputs: list) -> list[NotebookNode]:
    """Fresh copies of the outputs that only show text or PNG/JPEG images; anything else (HTML,
    JavaScript, SVG, widgets, unknown keys and types) is dropped."""
    kept = []
    for output in outputs:
        kind = output.get("output_type")
        if kind == "stream" and output.get("name") in ("stdout", "stderr") and isinstance(output.get("text"), str):
            kept.append(v4.new_output("stream", name=output["name"], text=output["text"]))
        elif kind == "error":
            traceback = [line for line in output.get("traceback", []) if isinstance(line, str)]
            kept.append(v4.new_output("error", ename=str(output.get("ename", "")),
                                      evalue=str(output.get("evalue", "")), traceback=traceback))
        elif kind in ("execute_result", "display_data"):
            data = {key: value for key, value in output.get("data", {}).items()
                    if key in SAFE_DATA and isinstance(value, str)
                    and (key == "text/plain" or BASE64.fullmatch(value))}
            if not data:
                continue
            metadata = {key: {name: size for name, size in output.get("metadata", {}).get(key, {}).items()
                              if name in SAFE_IMAGE_METADATA and isinstance(size, int)}
                        for key in data if key != "text/plain" and isinstance(output.get("metadata", {}).get(key), dict)}
            extra = {"execution_count": output.get("execution_count")} if kind == "execute_result" else {}
            if "execution_count" in extra and not isinstance(extra["execution_count"], int):
                extra["execution_count"] = None
            kept.append(v4.new_output(kind, data=data, metadata=metadata, **extra))
    return kept


class SafeNotebook(Preprocessor):
    """Before HTML is rendered: safe outputs only, raw cells as text, no notebook metadata but
    the kernel's and the language's (see the module's docstring)."""

    enabled = Bool(True).tag(config=True)

    def preprocess(self, nb: NotebookNode, resources: dict) -> tuple[NotebookNode, dict]:
        nb.metadata = NotebookNode({key: {name: value for name, value in nb.metadata[key].items()
                                          if isinstance(value, str) and PLAIN_WORDS.fullmatch(value)}
                                    for key in NOTEBOOK_METADATA if isinstance(nb.metadata.get(key), dict)})
        return super().preprocess(nb, resources)

    def preprocess_cell(self, cell: NotebookNode, resources: dict, index: int) -> tuple[NotebookNode, dict]:
        if cell.cell_type == "code":
            cell.outputs = safe_outputs(cell.get("outputs", []))
        elif cell.cell_type == "raw":
            cell.source = html.escape(cell.source)
            cell.metadata.pop("raw_mimetype", None)
            cell.metadata.pop("format", None)
        return cell, resources
