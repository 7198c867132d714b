// Who may do what in admin: the role groups the routes name, and the rules for managing users
// (which roles a caller may grant, whose account it may touch, which fields of an update it may
// set — the rest of an update is ignored, so a body cannot smuggle in a role or a tenant).

export const ROLES = ["admin", "operator", "auditor", "tenant_admin", "tenant_viewer"] as const;
export type Role = (typeof ROLES)[number];

export const TENANT_ROLES: readonly Role[] = ["tenant_admin", "tenant_viewer"];
/** Platform staff who change things. */
export const STAFF: Role[] = ["admin", "operator"];
/** Platform staff who may read everything (the auditor is read-only). */
export const READERS: Role[] = ["admin", "operator", "auditor"];
/** Every role: tenant users are then confined to their tenant by the handler. */
export const EVERYONE: Role[] = [...ROLES];
/** Platform staff and the tenant's own administrators. */
export const USER_MANAGERS: Role[] = ["admin", "operator", "tenant_admin"];
export const ADMIN_ONLY: Role[] = ["admin"];

export interface Actor {
  id: string;
  role: string | null;
  tenant_id: string | null;
}

export interface UserRef {
  id: string;
  role: string;
  tenant_id: string | null;
}

export const isRole = (r: unknown): r is Role => typeof r === "string" && (ROLES as readonly string[]).includes(r);
export const isTenantRole = (r: unknown): boolean => typeof r === "string" && TENANT_ROLES.includes(r as Role);
export const isPlatformReader = (r: unknown): boolean => typeof r === "string" && READERS.includes(r as Role);

/** Roles a caller may give to an account it creates or edits. */
export function grantableRoles(callerRole: string | null): Role[] {
  if (callerRole === "admin") return [...ROLES];
  if (callerRole === "operator" || callerRole === "tenant_admin") return [...TENANT_ROLES];
  return [];
}

/** May the caller see this account? Platform readers see all; tenant users their tenant's. */
export function canSeeUser(caller: Actor, target: UserRef): boolean {
  if (isPlatformReader(caller.role)) return true;
  return isTenantRole(caller.role) && !!caller.tenant_id && caller.tenant_id === target.tenant_id;
}

/** May the caller edit, disable or re-invite this account? */
export function canManageUser(caller: Actor, target: UserRef): boolean {
  if (caller.role === "admin") return true;
  if (caller.role === "operator") return isTenantRole(target.role);
  if (caller.role === "tenant_admin") return !!caller.tenant_id && caller.tenant_id === target.tenant_id;
  return false;
}

export interface NewUserRequest {
  role: string;
  tenant_id?: string | null;
}

/**
 * The role and tenant a new account gets, or why the caller may not create it. A tenant caller's
 * tenant_id field is ignored (the account joins the caller's tenant); platform roles never carry one.
 */
export function newUserPlacement(caller: Actor, req: NewUserRequest): { role: Role; tenant_id: string | null } | { status: 400 | 403; message: string } {
  if (!isRole(req.role)) return { status: 400, message: `role must be one of ${ROLES.join(", ")}` };
  if (!grantableRoles(caller.role).includes(req.role)) return { status: 403, message: `your role may not create ${req.role} accounts` };
  if (!isTenantRole(req.role)) return { role: req.role, tenant_id: null };
  const tenant = caller.role === "tenant_admin" ? caller.tenant_id : req.tenant_id ?? null;
  if (!tenant) return { status: 400, message: `a ${req.role} account needs tenant_id` };
  return { role: req.role, tenant_id: tenant };
}

export interface UserChanges {
  name?: string;
  role?: Role;
}

/**
 * The part of an update body the caller may apply to the target; everything else is reported as
 * ignored. Roles change only within their family (platform or tenant: the tenant binding stays),
 * never by the account's own holder, and only to roles the caller may grant.
 */
export function permittedUserChanges(caller: Actor, target: UserRef, body: Record<string, unknown>): { changes: UserChanges; ignored: string[] } {
  const changes: UserChanges = {};
  const ignored: string[] = [];
  const self = caller.id === target.id;
  const manage = canManageUser(caller, target);
  for (const [k, v] of Object.entries(body)) {
    if (k === "id") continue;
    if (k === "name" && typeof v === "string" && (self || manage)) changes.name = v;
    else if (
      k === "role" &&
      manage &&
      !self &&
      isRole(v) &&
      grantableRoles(caller.role).includes(v) &&
      isTenantRole(v) === isTenantRole(target.role)
    )
      changes.role = v;
    else ignored.push(k);
  }
  return { changes, ignored };
}
