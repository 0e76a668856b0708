-- Enrollment tokens (role "enroll") carry what a device enrolled with them
-- gets registered with: hardware, attributes and tags, as JSON.
ALTER TABLE tokens ADD COLUMN scope TEXT NULL;
