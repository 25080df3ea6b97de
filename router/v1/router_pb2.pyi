from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ChatMessage(_message.Message):
    __slots__ = ("role", "content")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    role: str
    content: str
    def __init__(self, role: _Optional[str] = ..., content: _Optional[str] = ...) -> None: ...

class Query(_message.Message):
    __slots__ = ("text", "messages")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    text: str
    messages: _containers.RepeatedCompositeFieldContainer[ChatMessage]
    def __init__(self, text: _Optional[str] = ..., messages: _Optional[_Iterable[_Union[ChatMessage, _Mapping]]] = ...) -> None: ...

class Budget(_message.Message):
    __slots__ = ("max_tokens", "max_samples")
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MAX_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    max_tokens: int
    max_samples: int
    def __init__(self, max_tokens: _Optional[int] = ..., max_samples: _Optional[int] = ...) -> None: ...

class SamplingOverrides(_message.Message):
    __slots__ = ("temperature", "top_p", "top_k", "seed", "max_new_tokens")
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    TOP_P_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    MAX_NEW_TOKENS_FIELD_NUMBER: _ClassVar[int]
    temperature: float
    top_p: float
    top_k: int
    seed: int
    max_new_tokens: int
    def __init__(self, temperature: _Optional[float] = ..., top_p: _Optional[float] = ..., top_k: _Optional[int] = ..., seed: _Optional[int] = ..., max_new_tokens: _Optional[int] = ...) -> None: ...

class RoutingHints(_message.Message):
    __slots__ = ("unit_id", "policy", "level", "budget", "sampling", "deadline_ms")
    UNIT_ID_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_MS_FIELD_NUMBER: _ClassVar[int]
    unit_id: str
    policy: str
    level: str
    budget: Budget
    sampling: SamplingOverrides
    deadline_ms: int
    def __init__(self, unit_id: _Optional[str] = ..., policy: _Optional[str] = ..., level: _Optional[str] = ..., budget: _Optional[_Union[Budget, _Mapping]] = ..., sampling: _Optional[_Union[SamplingOverrides, _Mapping]] = ..., deadline_ms: _Optional[int] = ...) -> None: ...

class Decision(_message.Message):
    __slots__ = ("difficulty", "level", "strategy", "samples", "parameters", "policy", "policy_version", "experiment", "arm", "reason", "predicted_success", "estimated_tokens", "estimated_latency_ms", "degraded")
    class ParametersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class PredictedSuccessEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    DIFFICULTY_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    ARM_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    PREDICTED_SUCCESS_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_FIELD_NUMBER: _ClassVar[int]
    difficulty: float
    level: str
    strategy: str
    samples: int
    parameters: _containers.ScalarMap[str, str]
    policy: str
    policy_version: str
    experiment: str
    arm: str
    reason: str
    predicted_success: _containers.ScalarMap[str, float]
    estimated_tokens: float
    estimated_latency_ms: float
    degraded: bool
    def __init__(self, difficulty: _Optional[float] = ..., level: _Optional[str] = ..., strategy: _Optional[str] = ..., samples: _Optional[int] = ..., parameters: _Optional[_Mapping[str, str]] = ..., policy: _Optional[str] = ..., policy_version: _Optional[str] = ..., experiment: _Optional[str] = ..., arm: _Optional[str] = ..., reason: _Optional[str] = ..., predicted_success: _Optional[_Mapping[str, float]] = ..., estimated_tokens: _Optional[float] = ..., estimated_latency_ms: _Optional[float] = ..., degraded: _Optional[bool] = ...) -> None: ...

class Usage(_message.Message):
    __slots__ = ("prompt_tokens", "completion_tokens", "samples", "model_calls")
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    MODEL_CALLS_FIELD_NUMBER: _ClassVar[int]
    prompt_tokens: int
    completion_tokens: int
    samples: int
    model_calls: int
    def __init__(self, prompt_tokens: _Optional[int] = ..., completion_tokens: _Optional[int] = ..., samples: _Optional[int] = ..., model_calls: _Optional[int] = ...) -> None: ...

class Timings(_message.Message):
    __slots__ = ("queue_ms", "classify_ms", "generate_ms", "total_ms")
    QUEUE_MS_FIELD_NUMBER: _ClassVar[int]
    CLASSIFY_MS_FIELD_NUMBER: _ClassVar[int]
    GENERATE_MS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MS_FIELD_NUMBER: _ClassVar[int]
    queue_ms: float
    classify_ms: float
    generate_ms: float
    total_ms: float
    def __init__(self, queue_ms: _Optional[float] = ..., classify_ms: _Optional[float] = ..., generate_ms: _Optional[float] = ..., total_ms: _Optional[float] = ...) -> None: ...

class Flags(_message.Message):
    __slots__ = ("degraded", "truncated_by_deadline", "truncated_by_budget")
    DEGRADED_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_BY_DEADLINE_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_BY_BUDGET_FIELD_NUMBER: _ClassVar[int]
    degraded: bool
    truncated_by_deadline: bool
    truncated_by_budget: bool
    def __init__(self, degraded: _Optional[bool] = ..., truncated_by_deadline: _Optional[bool] = ..., truncated_by_budget: _Optional[bool] = ...) -> None: ...

class Candidate(_message.Message):
    __slots__ = ("index", "text", "answer", "finish_reason", "completion_tokens", "mean_logprob", "scores", "chosen")
    class ScoresEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    INDEX_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MEAN_LOGPROB_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    CHOSEN_FIELD_NUMBER: _ClassVar[int]
    index: int
    text: str
    answer: str
    finish_reason: str
    completion_tokens: int
    mean_logprob: float
    scores: _containers.ScalarMap[str, float]
    chosen: bool
    def __init__(self, index: _Optional[int] = ..., text: _Optional[str] = ..., answer: _Optional[str] = ..., finish_reason: _Optional[str] = ..., completion_tokens: _Optional[int] = ..., mean_logprob: _Optional[float] = ..., scores: _Optional[_Mapping[str, float]] = ..., chosen: _Optional[bool] = ...) -> None: ...

class Trace(_message.Message):
    __slots__ = ("candidates", "votes")
    class VotesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    VOTES_FIELD_NUMBER: _ClassVar[int]
    candidates: _containers.RepeatedCompositeFieldContainer[Candidate]
    votes: _containers.ScalarMap[str, int]
    def __init__(self, candidates: _Optional[_Iterable[_Union[Candidate, _Mapping]]] = ..., votes: _Optional[_Mapping[str, int]] = ...) -> None: ...

class GenerateRequest(_message.Message):
    __slots__ = ("query", "hints", "return_trace", "request_id")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    HINTS_FIELD_NUMBER: _ClassVar[int]
    RETURN_TRACE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    query: Query
    hints: RoutingHints
    return_trace: bool
    request_id: str
    def __init__(self, query: _Optional[_Union[Query, _Mapping]] = ..., hints: _Optional[_Union[RoutingHints, _Mapping]] = ..., return_trace: _Optional[bool] = ..., request_id: _Optional[str] = ...) -> None: ...

class GenerateResponse(_message.Message):
    __slots__ = ("request_id", "text", "answer", "decision", "usage", "timings", "flags", "trace", "model")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    TRACE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    text: str
    answer: str
    decision: Decision
    usage: Usage
    timings: Timings
    flags: Flags
    trace: Trace
    model: str
    def __init__(self, request_id: _Optional[str] = ..., text: _Optional[str] = ..., answer: _Optional[str] = ..., decision: _Optional[_Union[Decision, _Mapping]] = ..., usage: _Optional[_Union[Usage, _Mapping]] = ..., timings: _Optional[_Union[Timings, _Mapping]] = ..., flags: _Optional[_Union[Flags, _Mapping]] = ..., trace: _Optional[_Union[Trace, _Mapping]] = ..., model: _Optional[str] = ...) -> None: ...

class GenerateStreamRequest(_message.Message):
    __slots__ = ("request",)
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    request: GenerateRequest
    def __init__(self, request: _Optional[_Union[GenerateRequest, _Mapping]] = ...) -> None: ...

class TokenDelta(_message.Message):
    __slots__ = ("text", "completion_tokens")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    text: str
    completion_tokens: int
    def __init__(self, text: _Optional[str] = ..., completion_tokens: _Optional[int] = ...) -> None: ...

class SampleFinished(_message.Message):
    __slots__ = ("candidate",)
    CANDIDATE_FIELD_NUMBER: _ClassVar[int]
    candidate: Candidate
    def __init__(self, candidate: _Optional[_Union[Candidate, _Mapping]] = ...) -> None: ...

class GenerateStreamResponse(_message.Message):
    __slots__ = ("decision", "token", "sample", "final")
    DECISION_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    decision: Decision
    token: TokenDelta
    sample: SampleFinished
    final: GenerateResponse
    def __init__(self, decision: _Optional[_Union[Decision, _Mapping]] = ..., token: _Optional[_Union[TokenDelta, _Mapping]] = ..., sample: _Optional[_Union[SampleFinished, _Mapping]] = ..., final: _Optional[_Union[GenerateResponse, _Mapping]] = ...) -> None: ...

class RouteRequest(_message.Message):
    __slots__ = ("query", "hints", "request_id")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    HINTS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    query: Query
    hints: RoutingHints
    request_id: str
    def __init__(self, query: _Optional[_Union[Query, _Mapping]] = ..., hints: _Optional[_Union[RoutingHints, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class RouteResponse(_message.Message):
    __slots__ = ("request_id", "decision", "decide_ms")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    DECIDE_MS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    decision: Decision
    decide_ms: float
    def __init__(self, request_id: _Optional[str] = ..., decision: _Optional[_Union[Decision, _Mapping]] = ..., decide_ms: _Optional[float] = ...) -> None: ...

class SubmitFeedbackRequest(_message.Message):
    __slots__ = ("request_id", "key", "score", "label", "comment")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    key: str
    score: float
    label: str
    comment: str
    def __init__(self, request_id: _Optional[str] = ..., key: _Optional[str] = ..., score: _Optional[float] = ..., label: _Optional[str] = ..., comment: _Optional[str] = ...) -> None: ...

class SubmitFeedbackResponse(_message.Message):
    __slots__ = ("created",)
    CREATED_FIELD_NUMBER: _ClassVar[int]
    created: bool
    def __init__(self, created: _Optional[bool] = ...) -> None: ...

class ListPoliciesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Policy(_message.Message):
    __slots__ = ("name", "version", "description", "levels", "is_default", "rule")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    LEVELS_FIELD_NUMBER: _ClassVar[int]
    IS_DEFAULT_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    description: str
    levels: _containers.RepeatedScalarFieldContainer[str]
    is_default: bool
    rule: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., description: _Optional[str] = ..., levels: _Optional[_Iterable[str]] = ..., is_default: _Optional[bool] = ..., rule: _Optional[str] = ...) -> None: ...

class Arm(_message.Message):
    __slots__ = ("name", "policy", "weight")
    NAME_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    name: str
    policy: str
    weight: float
    def __init__(self, name: _Optional[str] = ..., policy: _Optional[str] = ..., weight: _Optional[float] = ...) -> None: ...

class Experiment(_message.Message):
    __slots__ = ("name", "enabled", "arms", "shadow_arms")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    ARMS_FIELD_NUMBER: _ClassVar[int]
    SHADOW_ARMS_FIELD_NUMBER: _ClassVar[int]
    name: str
    enabled: bool
    arms: _containers.RepeatedCompositeFieldContainer[Arm]
    shadow_arms: _containers.RepeatedCompositeFieldContainer[Arm]
    def __init__(self, name: _Optional[str] = ..., enabled: _Optional[bool] = ..., arms: _Optional[_Iterable[_Union[Arm, _Mapping]]] = ..., shadow_arms: _Optional[_Iterable[_Union[Arm, _Mapping]]] = ...) -> None: ...

class ListPoliciesResponse(_message.Message):
    __slots__ = ("policies", "experiments", "source")
    POLICIES_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENTS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    policies: _containers.RepeatedCompositeFieldContainer[Policy]
    experiments: _containers.RepeatedCompositeFieldContainer[Experiment]
    source: str
    def __init__(self, policies: _Optional[_Iterable[_Union[Policy, _Mapping]]] = ..., experiments: _Optional[_Iterable[_Union[Experiment, _Mapping]]] = ..., source: _Optional[str] = ...) -> None: ...

class ReloadPoliciesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ReloadPoliciesResponse(_message.Message):
    __slots__ = ("policies", "experiments", "source")
    POLICIES_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENTS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    policies: _containers.RepeatedCompositeFieldContainer[Policy]
    experiments: _containers.RepeatedCompositeFieldContainer[Experiment]
    source: str
    def __init__(self, policies: _Optional[_Iterable[_Union[Policy, _Mapping]]] = ..., experiments: _Optional[_Iterable[_Union[Experiment, _Mapping]]] = ..., source: _Optional[str] = ...) -> None: ...
