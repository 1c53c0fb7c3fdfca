"""`kubectl podtrail`: a kubectl plugin that reads PodLifecycleRecords and tells pods' lives.

Pure modules turn record dicts into lines (`record`, `timefmt`, `style`, `life`, `workload`,
`table`, `args`); `api` reads records with kubernetes_asyncio and `main` wires them together.
"""
