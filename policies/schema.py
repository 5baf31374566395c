"""The YAML model. Every model forbids unknown keys so a typo is an error, not a default."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

Endpoint = Literal["chat", "completions", "embeddings"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerConfig(Strict):
    host: str = "127.0.0.1"
    port: int = Field(4000, ge=1, le=65535)
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    workers: int = Field(1, ge=1, le=64)
    access_log: bool = False
    # Stop accepting, then give in-flight requests this long to finish on shutdown.
    graceful_shutdown_s: float = Field(30.0, ge=0)


class Timeouts(Strict):
    """Per-attempt phases; the route's deadline (a later issue) cuts these shorter."""

    connect_ms: int = Field(5_000, ge=1)
    first_byte_ms: int = Field(120_000, ge=1)
    idle_ms: int = Field(60_000, ge=1)
    total_ms: int = Field(600_000, ge=1)


class _ProviderBase(Strict):
    api_base: str | None = None
    api_key: SecretStr | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    timeouts: Timeouts = Timeouts()
    max_connections: int = Field(512, ge=1)


class OpenAIProvider(_ProviderBase):
    """Any upstream that speaks the OpenAI wire format (OpenAI, vLLM, Groq, Together, …)."""

    kind: Literal["openai"]
    api_base: str = "https://api.openai.com/v1"


class AnthropicProvider(_ProviderBase):
    kind: Literal["anthropic"]
    api_base: str = "https://api.anthropic.com"
    anthropic_version: str = "2023-06-01"
    # Anthropic requires max_tokens; used when the OpenAI request carries none.
    default_max_tokens: int = Field(4096, ge=1)


class LiteLLMProvider(_ProviderBase):
    """The long tail (Bedrock, Vertex, Gemini, Cohere, …) through litellm, loaded lazily."""

    kind: Literal["litellm"]
    # Extra keyword arguments handed to litellm as they are (aws_region_name, vertex_project, …).
    params: dict[str, str | int | float | bool] = Field(default_factory=dict)


ProviderConfig = Annotated[
    OpenAIProvider | AnthropicProvider | LiteLLMProvider, Field(discriminator="kind")
]


class Target(Strict):
    provider: str
    model: str


class Route(Strict):
    targets: list[Target] = Field(min_length=1)
    # Which endpoints this route serves; by default every endpoint its targets support.
    endpoints: list[Endpoint] | None = None


class KeyConfig(Strict):
    name: str = Field(min_length=1)
    team: str | None = None
    key: SecretStr | None = None
    key_sha256: str | None = Field(None, pattern=r"^[0-9a-fA-F]{64}$")
    # Route names this key may use; None means every route.
    routes: list[str] | None = None
    admin: bool = False

    @model_validator(mode="after")
    def _exactly_one_secret(self) -> KeyConfig:
        if (self.key is None) == (self.key_sha256 is None):
            raise ValueError("give exactly one of 'key' or 'key_sha256'")
        if self.key is not None and not self.key.get_secret_value():
            raise ValueError("'key' is empty (is its ${VAR} unset?)")
        return self


class GatewayConfig(Strict):
    server: ServerConfig = ServerConfig()
    providers: dict[str, ProviderConfig] = Field(min_length=1)
    routes: dict[str, Route] = Field(min_length=1)
    keys: list[KeyConfig] = Field(min_length=1)
