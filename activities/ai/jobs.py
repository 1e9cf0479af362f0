"""Every activity of the AI jobs, for the worker to register in one go.

They live by what they touch: the job's rows and events (`job_state`), the project's files
(`context`), the model (`model`), the project's container (`testrun`).
"""

from __future__ import annotations

from typing import Any

import asyncpg
from temporalio.client import Client

from activities.ai.context import ContextActivities
from activities.ai.job_state import JobStateActivities
from activities.ai.model import ModelActivities
from activities.ai.provider import Provider
from activities.ai.testrun import TestRunActivities
from collab.broker import Broker
from files.service import FileSystem
from store.ai_budget import Budgets


class AIActivities:
    def __init__(
        self,
        pool: asyncpg.Pool,
        fs: FileSystem,
        provider: Provider,
        broker: Broker | None,
        client: Client,
        budgets: Budgets,
    ) -> None:
        self.job_state = JobStateActivities(pool, broker)
        self.context = ContextActivities(fs)
        self.model = ModelActivities(pool, provider, budgets)
        self.testrun = TestRunActivities(client)

    def all(self) -> list[Any]:
        return [
            self.job_state.set_status,
            self.context.gather,
            self.context.lint,
            self.model.ask,
            self.job_state.save_findings,
            self.context.propose,
            self.testrun.ensure_container,
            self.testrun.prepare_run,
            self.testrun.parse_run,
            self.testrun.compose_tests,
        ]
