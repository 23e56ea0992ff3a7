"""The carbon ledger's reports: baselines, sums over a period, exports and the HTML report.

The ledger lives in the catalog (every committed and closed entry, with its estimate and inputs);
the catalog sums it in SQL (:meth:`greenroute.ports.Catalog.aggregate`). This package decides what
to ask for and presents the answer: :mod:`.baseline` (the counterfactual, priced at write time),
:mod:`.ledger` (periods, groupings, buckets and the report's rows), :mod:`.export` (table, JSON,
CSV, Parquet) and :mod:`.html` (the self-contained HTML report). Nothing here imports pandas,
pyarrow or matplotlib until an export that needs it runs.
"""

from __future__ import annotations
