"""The bodies of the ``python -m lesionlib`` commands, one module per group.

``lesionlib.cli`` parses the command line and calls these; nothing else in the library imports
them (``.importlinter``). Each body imports the library modules it needs when it runs.
"""
