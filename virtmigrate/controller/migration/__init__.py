"""The migration controller: observe the caches, decide one plan per sync, execute it."""
