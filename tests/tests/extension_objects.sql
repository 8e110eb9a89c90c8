-- Every object of the pg_webhooks extension in this database, one row each, with what makes it
-- what it is: definitions, columns, constraints, indexes, owners, grants and comments. Two
-- databases whose rows are equal have the same extension, however each got there
-- (tests/tests/upgrade.rs: CREATE EXTENSION against ALTER EXTENSION ... UPDATE).
WITH members AS (
    SELECT d.classid, d.objid
    FROM pg_depend d JOIN pg_extension x ON x.oid = d.refobjid
    WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e' AND x.extname = 'pg_webhooks'
), relations AS (
    SELECT c.* FROM members m JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid
)
SELECT kind, name, definition FROM (
    SELECT 'function' AS kind, p.oid::regprocedure::text AS name,
           concat_ws(' | ', pg_get_functiondef(p.oid), p.proowner::regrole, p.proacl,
                     obj_description(p.oid, 'pg_proc')) AS definition
    FROM members m JOIN pg_proc p ON m.classid = 'pg_proc'::regclass AND p.oid = m.objid
    UNION ALL
    SELECT 'relation', c.oid::regclass::text,
           concat_ws(' | ', c.relkind, c.relowner::regrole, c.relacl, obj_description(c.oid, 'pg_class'),
                     (SELECT string_agg(concat_ws(' ', a.attname, format_type(a.atttypid, a.atttypmod),
                                                  pg_get_expr(ad.adbin, ad.adrelid),
                                                  CASE WHEN a.attnotnull THEN 'not null' END,
                                                  col_description(c.oid, a.attnum)),
                                        ', ' ORDER BY a.attnum)
                      FROM pg_attribute a
                      LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
                      WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
                     CASE WHEN c.relkind = 'v' THEN pg_get_viewdef(c.oid) END)
    FROM relations c
    UNION ALL
    SELECT 'constraint', con.conrelid::regclass || '.' || con.conname, pg_get_constraintdef(con.oid)
    FROM pg_constraint con JOIN relations c ON c.oid = con.conrelid
    UNION ALL
    SELECT 'index', i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
    FROM pg_index i JOIN relations c ON c.oid = i.indrelid
    UNION ALL
    SELECT 'trigger', t.tgrelid::regclass || '.' || t.tgname, pg_get_triggerdef(t.oid)
    FROM pg_trigger t JOIN relations c ON c.oid = t.tgrelid WHERE NOT t.tgisinternal
    UNION ALL
    SELECT 'event trigger', e.evtname, concat_ws(' | ', e.evtevent, e.evtfoid::regproc, e.evttags)
    FROM members m JOIN pg_event_trigger e ON m.classid = 'pg_event_trigger'::regclass AND e.oid = m.objid
    UNION ALL
    SELECT 'type', t.oid::regtype::text, concat_ws(' | ', t.typtype, t.typowner::regrole)
    FROM members m JOIN pg_type t ON m.classid = 'pg_type'::regclass AND t.oid = m.objid
    UNION ALL
    SELECT 'dumped with pg_dump', c::regclass::text, ''
    FROM pg_extension x, unnest(x.extconfig) c WHERE x.extname = 'pg_webhooks'
    UNION ALL
    -- the rights pg_dump takes as the extension's own (a dump then restores only changes)
    SELECT 'initial privileges', pg_describe_object(i.classoid, i.objoid, i.objsubid),
           concat_ws(' | ', i.privtype, i.initprivs)
    FROM pg_init_privs i JOIN members m ON m.classid = i.classoid AND m.objid = i.objoid
) objects
ORDER BY kind, name;
