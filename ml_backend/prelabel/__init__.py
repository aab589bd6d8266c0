"""`segassist prelabel`: the prediction service driven over a whole folder, tasks file or project.

command.py       the command line: arguments checked (exit 2) before any model loads -> a `Run`
driver.py        `prelabel(run)`: skip rule and journal, an executor, the sink, progress and summary
sources.py       folder, tasks JSON and Label Studio project -> `Item`s; `ImageLoader`
pipeline.py      the local executor over `ml_backend.service`; `Outcome`
ray_executor.py  the same stages as a Ray Data job (model actors, CPU tasks for read and render)
sinks.py         Label Studio JSON, the converters' dataset writers, pushes to a project
journal.py       what a run finished, so an interrupted one resumes
project.py       a Label Studio project through label-studio-sdk
"""
