-- Deleting a project is a workflow (workflows/project_deletion.py): the API hides the project
-- at once by setting deleted_at, and the ProjectDeletion workflow removes its container,
-- workflows and workspaces, then the row itself (which cascades to files, versions, chat and
-- AI jobs, releasing their blobs to garbage collection). Every read through membership skips
-- hidden projects, so they answer 404 from the moment of the DELETE.
ALTER TABLE projects ADD COLUMN deleted_at timestamptz;
CREATE INDEX projects_deleted ON projects (deleted_at) WHERE deleted_at IS NOT NULL;
