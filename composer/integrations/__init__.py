"""Front ends for other stacks: LangChain (`integrations.langchain`) and the OpenAI-compatible
HTTP server (`integrations.server`). Import the submodule you need; nothing loads here."""
