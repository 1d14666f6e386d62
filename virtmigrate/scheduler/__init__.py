"""Pure placement decisions for a migration's target pod.

Fed by: the migration controller (VM and Migration specs, Node and Pod objects from informers,
as the JSON dicts the API returns). Consumed by: the target pod builder and the controller's
status/event reporting. No I/O, no kube client, no clock; inputs are never mutated.

- `merge_constraints(...) -> Merged | Contradiction` (merge.py): the target pod's nodeSelector,
  required node affinity and tolerations, or every conflicting key and a message a user can act on.
- `node_matches(labels, merged, node_name=...)` (merge.py): kube-scheduler's NodeAffinity verdict.
- `explain_infeasible(nodes, pods, merged=..., memory_request_bytes=...) -> Feasibility`
  (feasibility.py): per-node reasons and a kube-scheduler-style summary.

Precedence of the merge:

1. VM and Migration constraints are ANDed. Neither side wins silently: the same nodeSelector key
   with different values, or a selector that no VM affinity term can satisfy (In, NotIn, Exists,
   DoesNotExist, Gt, Lt; ORed terms considered together), is a Contradiction that fails the
   migration at once.
2. The cluster-wide default selector only fills keys neither the VM nor the Migration mentions.
3. Every required term carries `kubernetes.io/hostname NotIn [source]` (and the same on
   `metadata.name` via matchFields, for nodes whose hostname label differs from their name).
4. The VM's tolerations pass through unchanged; VM affinity terms that cannot hold next to the
   merged selector are dropped.
"""

from virtmigrate.scheduler.feasibility import Feasibility, NodeVerdict, Reason, ReasonKind, explain_infeasible
from virtmigrate.scheduler.labels import HOSTNAME_LABEL, NAME_FIELD, Op, Requirement
from virtmigrate.scheduler.merge import Conflict, Contradiction, Merged, merge_constraints, node_matches

__all__ = [
    "HOSTNAME_LABEL",
    "NAME_FIELD",
    "Conflict",
    "Contradiction",
    "Feasibility",
    "Merged",
    "NodeVerdict",
    "Op",
    "Reason",
    "ReasonKind",
    "Requirement",
    "explain_infeasible",
    "merge_constraints",
    "node_matches",
]
