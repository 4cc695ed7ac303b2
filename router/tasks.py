"""The router's task handlers: a submission becomes a routed task, its pipeline runs, its reply goes out once.

    task/submit/{client} ─► TaskPipeline (if we own the task) ─► reply/{client}: TaskAnswer | ErrorReply
                         (the account in the topic is who asked: router.tenancy binds and caps it)
                         TaskCancel ─► the task stops (its runs are cancelled)
    router/{id}/inbox ─► the pending dispatch's future (RunResult, or ErrorReply such as busy)
                         RunChunk of a streamed run ─► TaskChunk on the task's reply topic
    agent/{id}/run    ◄─ RunRequest, and RunCancel for a run no longer awaited (early stop, deadline)
    task/{client}/{task}/events ◄─ trace events (gold answers stripped), in the submitting client's namespace:
                         every step for a task that asked for a full trace, else its answered/failed event
    trace/request     ─► an observer (the dashboard) watches: the tasks that start meanwhile trace in full

Part of RouterService (router.service); the state it reads is described in router.plumbing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from router.ledger import answered_entry, claim_entry
from router.locality import task_owner
from router.pipeline import NoAgentsError, TaskPipeline
from router.plumbing import RouterPlumbing, failed_result
from router.routed_task import PendingRun, RoutedTask, without_gold
from router.site_role import task_brain
from router.tenancy import bind, submitter
from shared.errors import MessageError
from shared.messages import (
    Bid,
    ChunkPhase,
    ErrorCode,
    ErrorReply,
    RunCancel,
    RunChunk,
    RunRequest,
    RunResult,
    TaskAnswer,
    TaskCancel,
    TaskEvent,
    TaskEventName,
    TaskRequest,
    TraceRequest,
    peek_reply_route,
)

log = logging.getLogger(__name__)


class TaskHandlers(RouterPlumbing):
    """Submissions, cancels, each task's pipeline and reply, and the RunPort the pipeline uses."""

    def _on_bad_submit(self, topic: str, payload: bytes, error: MessageError) -> None:
        self.submissions_received += 1
        self._refuse(topic, payload, "bad_request", str(error))

    def _on_submit(self, topic: str, submitted: TaskRequest | TaskCancel) -> None:
        self.submissions_received += 1
        client = submitter(self.topics, topic, submitted, self._reads_legacy_submit())  # who asked (router.tenancy)
        if client is None:
            log.warning("dropped task %s: no client account in %r nor its reply topic", submitted.task_id, topic[:200])
            return
        if isinstance(submitted, TaskCancel):
            self._on_task_cancel(submitted.model_copy(update={"client_id": client}))
            return
        request: TaskRequest = submitted
        if request.task_id in self.running:
            self._acknowledge_resend(request, client)  # ours even if its ownership moved since: we finish it
            return
        owner = task_owner(request.task_id, request.site, self.roster.presences)
        if self.config.share_group is None and owner != self.router_id:
            return  # another live router owns this task (with a shared subscription the broker chose us)
        bound = bind(self.topics, request, client)
        if isinstance(bound, ErrorReply):  # it named another client's reply topic: told on its own
            self._publish(self.topics.reply(client), bound)
            return
        request = bound
        reply_topic = self.topics.reply(client)
        done = self.ledger.answered(request.task_id)
        if done is not None and done.answer is not None:
            if done.client_id == client:  # an answer is replayed only to the client that asked
                self._publish(reply_topic, done.answer.model_copy(update={"replayed": True}))
            else:
                message = "this task id was already answered for another client; use a fresh task id"
                self._publish(reply_topic, ErrorReply(code="bad_request", message=message, task_id=request.task_id))
            return
        if self.ledger.claimed_elsewhere(request.task_id, self._live_instances(), self.instance_id) is not None:
            return  # another live router runs it (it was the owner when the task came): it answers
        refusal = self.config.tenancy.refusal(request, client, self._account_tasks.running(client))
        if refusal is not None:  # over the account's caps
            self._publish(reply_topic, refusal)
            return
        request = self.config.tenancy.capped(request)
        claim = claim_entry(request.task_id, client, self.router_id, self.instance_id, time.time())
        self.ledger.apply(claim, time.time())
        self._publish_ledger(claim)
        if request.options.trace != "full" and time.monotonic() < self.full_traces_until:  # a dashboard watches
            request = request.model_copy(update={"options": request.options.model_copy(update={"trace": "full"})})
        task = RoutedTask(request, client, self.topics.task_events(client, request.task_id))
        task.runner = asyncio.create_task(self._handle_task(task), name=f"router[{self.router_id}].task")
        self._account_tasks.started(client)  # until the task is done, even cancelled before it ran
        task.runner.add_done_callback(lambda _: self._account_tasks.finished(client))
        self.running[request.task_id] = task

    def _reads_legacy_submit(self) -> bool:
        """The account-less `task/submit` is read only on an anonymous fabric (no account to bind a task to)."""
        return self.config.connection.username is None

    def _on_task_cancel(self, cancel: TaskCancel) -> None:
        """The client went away: stop the task (its runs are cancelled on their agents); no reply follows."""
        task = self.running.get(cancel.task_id)
        if task is None or task.request.client_id != cancel.client_id:
            return  # not ours, already answered, or not the client that asked
        self.emit(cancel.task_id, "failed", {"code": "cancelled", "message": cancel.reason[:200]})
        if task.runner is not None:
            task.runner.cancel()

    async def _handle_task(self, task: RoutedTask) -> None:
        request = task.request
        try:
            reply = await self._answer(request)
        finally:
            self.running.pop(request.task_id, None)  # the one place a routed task is dropped
        earlier = self.ledger.answered(request.task_id)
        if earlier is not None and earlier.answer is not None:  # another router answered it meanwhile: one answer
            reply = earlier.answer.model_copy(update={"replayed": True})
        elif isinstance(reply, TaskAnswer):
            self._remember(task.client, reply)
        else:  # not answered: the claim goes, so a resend may try again
            self.ledger.forget(request.task_id)
            self._clear_ledger(request.task_id)
        self._publish(self.topics.reply(task.client), reply)

    def _acknowledge_resend(self, request: TaskRequest, client: str) -> None:
        """A client resent a task we run: tell it (a `resent` event). Its runs are not sent again: that would let
        one small message re-publish every outstanding run (the router re-asks them itself after a reconnect, and
        when their node re-announces). The same task id from another account gets nothing of the task."""
        running = self.running.get(request.task_id)
        if running is None or running.client != client:
            message = "this task id is in use by another client; use a fresh task id"
            refusal = ErrorReply(code="bad_request", message=message, task_id=request.task_id)
            self._publish(self.topics.reply(client), refusal)
            return
        outstanding = sum(1 for _ in running.outstanding())
        self.emit(request.task_id, "resent", {"outstanding_runs": outstanding})

    async def _answer(self, request: TaskRequest) -> TaskAnswer | ErrorReply:
        task_id = request.task_id
        try:
            await self._wait_for_agents(min(self.config.agent_wait_s, request.options.deadline_s / 2))
            pipeline = TaskPipeline(
                request,
                task_brain(self, request),
                await self._agents_for(request),
                self,
                self.router_id,
                time.monotonic,
                lambda: self._wait_for_agents(self.config.agent_wait_s),
                self.registry.announced_since,  # agents out of reach are waited for until the deadline
                teaches=self.config.tenancy.teaches(request.client_id),
                max_steps=self.config.tenancy.max_steps(request.client_id),
            )
            return await asyncio.wait_for(pipeline.execute(), request.options.deadline_s)
        except asyncio.TimeoutError:
            message = f"no answer within the deadline of {request.options.deadline_s:g} s"
            self.emit(task_id, "failed", {"code": "timeout"})
            return ErrorReply(code="timeout", message=message, task_id=task_id)
        except NoAgentsError as error:
            self.emit(task_id, "failed", {"code": "no_agents", "message": str(error)})
            return ErrorReply(code="no_agents", message=str(error), task_id=task_id)
        except Exception as error:  # a bug in one task must not take the router down; the client is told
            log.exception("task %s failed", task_id)
            self.emit(task_id, "failed", {"code": "internal_error"})
            return ErrorReply(code="internal_error", message=f"{type(error).__name__}: {error}"[:4000], task_id=task_id)

    async def _wait_for_agents(self, wait_s: float) -> bool:
        """Give agents a moment to (re)announce themselves, e.g. right after a broker restart (bounded)."""
        if self.sites is not None and self.sites.site_agents():
            return True  # other sites answer by their summaries
        deadline = time.monotonic() + wait_s
        while not self.live_agents() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        return bool(self.live_agents())

    async def _agents_for(self, request: TaskRequest) -> Any:
        """The agent source of the pipeline: the registry, or the agents that answered a bid round."""
        if request.options.selection == "registry":
            return self.live_agents
        assert self.client is not None
        views = await self.bids.collect(self.client, self.topics, self.router_id, request, list(self.live_agents()))
        self.emit(request.task_id, "screened", {"bids": [view.agent_id for view in views]})
        return lambda: views

    def _remember(self, client: str, answer: TaskAnswer) -> None:
        """Record the answer in the ledger and share it with the other routers (retained)."""
        entry = answered_entry(answer, client, self.router_id, self.instance_id, time.time())
        self.ledger.apply(entry, time.time())
        if client:
            self._publish_ledger(entry)

    def _refuse(self, topic: str, payload: bytes, code: ErrorCode, message: str) -> None:
        """Answer a submission that could not be read: on its account's reply topic (legacy: the one it names)."""
        reply_topic, task_id, _ = peek_reply_route(payload)
        client = self.topics.submit_owner(topic)
        if client is not None:
            reply_topic = self.topics.reply(client)
        elif not self._reads_legacy_submit():
            reply_topic = None
        log.info("refused a task (%s): %s", code, message[:300])
        if reply_topic is not None and self.topics.reply_owner(reply_topic) is not None:
            self._publish(reply_topic, ErrorReply(code=code, message=message[:4000], task_id=task_id))

    # --- RunPort (used by the pipeline) ---------------------------------------------------------------------

    async def run(self, request: RunRequest, timeout_s: float) -> RunResult:
        """Dispatch a run to its agent and wait for the result; failures come back as error results."""
        assert self.client is not None
        future: asyncio.Future[RunResult] = asyncio.get_running_loop().create_future()
        task = self.running.get(request.task_id)
        # A run of no task of ours is one we place for another site's router (router.relay): kept apart.
        runs = task.runs if task is not None else self.relayed_runs
        runs[request.dispatch_id] = PendingRun(request, future)
        self.runs_dispatched += 1
        self._publish(self.topics.agent_run(request.agent_id), request)
        dispatched_at = time.monotonic()
        try:
            # asyncio.wait, not wait_for: wait_for may swallow a cancellation (an early-stopped vote) when the
            # result lands in the same loop iteration, and the cancelled run would then report after the answer.
            while not future.done():
                remaining = self._run_due(dispatched_at, timeout_s) - time.monotonic()
                if remaining <= 0:
                    break
                await asyncio.wait([future], timeout=remaining)
        except asyncio.CancelledError:  # an early-stopped vote, the task's deadline, a client gone: free the agent
            if not future.done():
                self._cancel_run(request, "cancelled")
            raise
        finally:
            runs.pop(request.dispatch_id, None)
        if not future.done():
            self._cancel_run(request, "timeout")
            return failed_result(request, "timeout", f"no result within {timeout_s:g} s")
        return future.result()

    def _run_due(self, dispatched_at: float, timeout_s: float) -> float:
        """When a run's result is due: `timeout_s` after it was sent, or after our last reconnect.

        Time this router spends cut off from the broker is not the agent's: a reconnect asks the outstanding runs
        again (same dispatch id), so their time starts again then; while disconnected, nothing is due yet.
        """
        assert self.client is not None
        if not self.client.is_connected:
            return time.monotonic() + timeout_s
        return max(dispatched_at, self.client.connected_since or dispatched_at) + timeout_s

    def _cancel_run(self, request: RunRequest, reason: str) -> None:
        if not self.config.cancel_runs or self.client is None:
            return
        cancel = RunCancel(
            dispatch_id=request.dispatch_id, task_id=request.task_id, agent_id=request.agent_id, reason=reason
        )
        self._publish(self.topics.agent_run(request.agent_id), cancel)

    def emit(self, task_id: str, event: TaskEventName, data: dict[str, Any]) -> None:
        """Publish a trace event of a running task to its client's namespace, without the gold answer."""
        task = self.running.get(task_id)
        if task is None:
            return  # not a task of ours (or already answered): nobody to tell
        if not task.traces(event):
            return  # nobody follows this task step by step: a packet (and its encoding) saved
        public = without_gold(data)
        message = TaskEvent(task_id=task_id, router_id=self.router_id, event=event, at=time.time(), data=public)
        self._publish(task.events_topic, message, qos=0)

    def stream(self, task_id: str, phase: ChunkPhase, text: str, dispatch_id: str = "") -> None:
        """Send a TaskChunk to the client of a task that asked for a stream (progress from the pipeline, or the
        tokens of the run the pipeline marked to stream, relayed from the inbox)."""
        task = self.running.get(task_id)
        chunk = task.chunk(phase, text, dispatch_id) if task is not None else None
        if task is not None and chunk is not None:
            self._publish(task.reply_topic, chunk)

    def _on_inbox(self, topic: str, message: RunResult | RunChunk | ErrorReply) -> None:
        if isinstance(message, RunChunk):
            run = self._run_of(message.task_id, message.dispatch_id)
            if run is not None and run.request.stream and run.request.agent_id == message.agent_id:
                self.stream(run.request.task_id, "token", message.text, message.dispatch_id)
        elif isinstance(message, RunResult):
            self._resolve(self._run_of(message.task_id, message.dispatch_id), message)
        elif isinstance(message, ErrorReply) and message.dispatch_id:
            run = self._run_of(message.task_id, message.dispatch_id)
            if run is not None:
                kind = message.code if message.code in ("busy", "bad_request") else "backend_error"
                self._resolve(run, failed_result(run.request, kind, message.message))

    def _on_trace_request(self, topic: str, request: TraceRequest) -> None:
        """An observer watches every task (the dashboard): the tasks that start within its request trace in full."""
        self.full_traces_until = max(self.full_traces_until, time.monotonic() + request.duration_s)

    def _on_bid(self, topic: str, bid: Bid) -> None:
        self.bids.offer(bid)

    def _run_of(self, task_id: str | None, dispatch_id: str) -> PendingRun | None:
        """The awaited run of a dispatch id: in the task the message names, else in any (a result names its task)."""
        task = self.running.get(task_id) if task_id else None
        if task is not None and dispatch_id in task.runs:
            return task.runs[dispatch_id]
        if dispatch_id in self.relayed_runs:
            return self.relayed_runs[dispatch_id]
        return next((t.runs[dispatch_id] for t in self.running.values() if dispatch_id in t.runs), None)

    def _resolve(self, run: PendingRun | None, result: RunResult) -> None:
        if run is not None and not run.result.done():
            run.result.set_result(result)
