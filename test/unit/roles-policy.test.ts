import { canManageUser, canSeeUser, grantableRoles, newUserPlacement, permittedUserChanges, ROLES } from "../../lib/admin-roles";

const T1 = "11111111-1111-1111-1111-111111111111";
const T2 = "22222222-2222-2222-2222-222222222222";
const admin = { id: "a", role: "admin", tenant_id: null };
const operator = { id: "o", role: "operator", tenant_id: null };
const auditor = { id: "u", role: "auditor", tenant_id: null };
const tAdmin = { id: "ta", role: "tenant_admin", tenant_id: T1 };
const tViewer = { id: "tv", role: "tenant_viewer", tenant_id: T1 };

describe("who may grant which role", () => {
  it("admins grant every role; operators and tenant admins only tenant roles; readers none", () => {
    expect(grantableRoles("admin")).toEqual([...ROLES]);
    expect(grantableRoles("operator")).toEqual(["tenant_admin", "tenant_viewer"]);
    expect(grantableRoles("tenant_admin")).toEqual(["tenant_admin", "tenant_viewer"]);
    expect(grantableRoles("auditor")).toEqual([]);
    expect(grantableRoles("tenant_viewer")).toEqual([]);
    expect(grantableRoles(null)).toEqual([]);
  });
});

describe("placing a new account", () => {
  it("puts a tenant admin's new user in the tenant admin's own tenant, whatever tenant_id says", () => {
    expect(newUserPlacement(tAdmin, { role: "tenant_viewer", tenant_id: T2 })).toEqual({ role: "tenant_viewer", tenant_id: T1 });
  });
  it("refuses roles beyond the caller's grant with 403", () => {
    expect(newUserPlacement(tAdmin, { role: "admin" })).toMatchObject({ status: 403 });
    expect(newUserPlacement(operator, { role: "auditor" })).toMatchObject({ status: 403 });
    expect(newUserPlacement(auditor, { role: "tenant_viewer", tenant_id: T1 })).toMatchObject({ status: 403 });
  });
  it("needs a tenant for tenant roles and drops it for platform roles", () => {
    expect(newUserPlacement(admin, { role: "tenant_admin" })).toMatchObject({ status: 400 });
    expect(newUserPlacement(admin, { role: "operator", tenant_id: T1 })).toEqual({ role: "operator", tenant_id: null });
    expect(newUserPlacement(admin, { role: "superuser" })).toMatchObject({ status: 400 });
  });
});

describe("seeing and managing accounts", () => {
  const other = { id: "x", role: "tenant_viewer", tenant_id: T2 };
  const mine = { id: "y", role: "tenant_viewer", tenant_id: T1 };
  const staff = { id: "z", role: "operator", tenant_id: null };
  it("confines tenant users to their tenant", () => {
    expect(canSeeUser(tViewer, mine)).toBe(true);
    expect(canSeeUser(tViewer, other)).toBe(false);
    expect(canSeeUser(tAdmin, staff)).toBe(false);
    expect(canSeeUser(auditor, other)).toBe(true);
  });
  it("lets operators manage tenant users only, tenant admins their tenant's, viewers and auditors nobody", () => {
    expect(canManageUser(operator, other)).toBe(true);
    expect(canManageUser(operator, staff)).toBe(false);
    expect(canManageUser(tAdmin, mine)).toBe(true);
    expect(canManageUser(tAdmin, other)).toBe(false);
    expect(canManageUser(tViewer, mine)).toBe(false);
    expect(canManageUser(auditor, other)).toBe(false);
    expect(canManageUser(admin, staff)).toBe(true);
  });
});

describe("mass assignment", () => {
  it("ignores role, tenant, email and status on one's own account", () => {
    const self = { id: "ta", role: "tenant_admin", tenant_id: T1 };
    const r = permittedUserChanges(tAdmin, self, { name: "New", role: "admin", tenant_id: T2, email: "x@y.z", status: "active", password_hash: "x" });
    expect(r.changes).toEqual({ name: "New" });
    expect(r.ignored.sort()).toEqual(["email", "password_hash", "role", "status", "tenant_id"]);
  });
  it("lets a tenant admin move a user between tenant roles but never to a platform role", () => {
    const target = { id: "y", role: "tenant_viewer", tenant_id: T1 };
    expect(permittedUserChanges(tAdmin, target, { role: "tenant_admin" }).changes).toEqual({ role: "tenant_admin" });
    expect(permittedUserChanges(tAdmin, target, { role: "admin" })).toEqual({ changes: {}, ignored: ["role"] });
  });
  it("keeps roles within their family even for admins (the tenant binding never changes in an update)", () => {
    const target = { id: "y", role: "tenant_viewer", tenant_id: T1 };
    expect(permittedUserChanges(admin, target, { role: "operator" }).ignored).toEqual(["role"]);
    expect(permittedUserChanges(admin, { id: "z", role: "operator", tenant_id: null }, { role: "auditor" }).changes).toEqual({ role: "auditor" });
  });
  it("lets a viewer change nothing of anybody else", () => {
    expect(permittedUserChanges(tViewer, { id: "y", role: "tenant_viewer", tenant_id: T1 }, { name: "x", role: "tenant_admin" }).changes).toEqual({});
  });
});
