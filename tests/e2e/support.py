"""What the end-to-end scenarios share, under the names their tests import.

The client, the pod builders and the record readers live in tests/support/ (one of each for
every cluster suite); this module names them for tests/e2e, tests/kind and tests/faults.
"""

from __future__ import annotations

from tests.support.images import TESTBOX as TESTBOX  # the tests' image, one constant
from tests.support.kube import Kube as Kube
from tests.support.kube import pod_ready as pod_ready
from tests.support.kube import pod_running as pod_running
from tests.support.pods import container as container
from tests.support.pods import pod as pod
from tests.support.records import GROUP as GROUP
from tests.support.records import PLURAL as PLURAL
from tests.support.records import VERSION as VERSION
from tests.support.records import Obj as Obj
from tests.support.records import describe as describe
from tests.support.records import entries as entries
from tests.support.records import entry as entry
from tests.support.records import has_entry as has_entry
from tests.support.records import has_outcome as has_outcome
from tests.support.records import has_phase as has_phase
from tests.support.records import parse_time as parse_time
from tests.support.records import status_of as status_of
from tests.support.records import timeline_keys as timeline_keys
