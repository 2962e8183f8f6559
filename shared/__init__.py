"""Code both halves of StepAlign use: wire schemas, step segmentation, answer checking, prompts, the critique
text schema and the faithful-scribe feedback. Pure Python plus pydantic, math-verify and httpx: importing it
pulls in no web framework and no ML stack (an import-linter contract enforces that)."""

__version__ = "0.1.0"
